package gdpr

// Field is one personal field helix-authz keeps in its database. Fields is
// the one list: Export shows each under its Section, Erase empties each as
// Erase says, docs/privacy.md describes each (the tests hold all three to
// it).
type Field struct {
	Table, Column string
	// Section is the export's member that shows it; "" for a field that
	// is never exported.
	Section string
	// Erase is what erasure leaves: an SQL value the column is set to,
	// or RowDeleted, or Pseudonymised (audit rows: see audit.Pseudonymise).
	Erase string
	// Kept says how long the field lives, What what it holds, as
	// docs/privacy.md's table says.
	Kept, What string
}

// Erase values that are not an SQL value.
const (
	RowDeleted    = "row deleted"
	Pseudonymised = "pseudonymised"
)

// Fields lists every personal field in the database.
var Fields = []Field{
	{"users", "email", "user", "NULL", "until erasure", "the sign-in address (lower-cased)"},
	{"users", "email_verified_at", "user", "NULL", "until erasure", "when the address was confirmed"},
	{"users", "password_hash", "", "NULL", "until erasure or a password change",
		"argon2id hash of the password"}, // never exported: a hash of a secret helps only an attacker
	{"users", "display_name", "user", "''", "until erasure", "the name the person chose to show"},
	{"users", "organization", "user", "''", "until erasure", "the organization typed in the profile"},
	{"users", "preferences", "user", "'{}'", "until erasure", "the person's settings"},
	{"sessions", "source", "sessions", "''", "until erasure (ended sessions are kept)",
		"the address a session was opened from"},
	{"sessions", "user_agent", "sessions", "''", "until erasure (ended sessions are kept)",
		"the browser or program that opened a session"},
	{"account_tokens", "new_email", "account_tokens", RowDeleted, "until the link is used or erasure",
		"the new address an email change waits to confirm"},
	{"audit_log", "operator", "audit", Pseudonymised, "`--audit-retention` (365 days)",
		"the name an admin-token caller gave (`Helix-Operator`)"},
	{"audit_log", "source", "audit", Pseudonymised, "`--audit-retention` (365 days)", "the caller's address"},
	{"audit_log", "user_agent", "audit", Pseudonymised, "`--audit-retention` (365 days)", "the caller's user agent"},
}

// sqlErased returns the columns of table that erasure sets, with their
// values, as "col = value, ...".
func sqlErased(table string) string {
	out := ""
	for _, f := range Fields {
		if f.Table != table || f.Erase == RowDeleted || f.Erase == Pseudonymised {
			continue
		}
		if out != "" {
			out += ", "
		}
		out += f.Column + " = " + f.Erase
	}
	return out
}

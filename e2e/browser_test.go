package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/helixflow/helixflow/internal/testdeps"
)

// browser is Debian's headless chromium driven over the DevTools protocol
// (chromedp): the portal tested as a person uses it, with its CSP, cookies
// and scripts. Screenshots of each page go to artifacts; each page is
// checked by axe-core (make deps fetches it, pinned).
type browser struct {
	t         *testing.T
	ctx       context.Context
	base      string // https://127.0.0.1:<gateway port>
	artifacts string
	axe       string // axe.min.js
	shots     int
}

// artifactsDir is where the portal's screenshots go:
// $HELIX_ARTIFACTS/portal, else .artifacts/portal in the repository.
func artifactsDir(t *testing.T) string {
	root := os.Getenv("HELIX_ARTIFACTS")
	if root == "" {
		root = filepath.Join(repoRoot, ".artifacts")
	}
	dir := filepath.Join(root, "portal")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowser starts chromium for base. The stack's certificates come from
// its own development CA, which chromium does not know; the browser
// ignores certificate errors for this test only.
func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		testdeps.Missing(t, "chromium is not installed (make deps installs Debian's chromium): %v", err)
		return nil
	}
	axe, err := os.ReadFile(filepath.Join(repoRoot, ".deps", "axe-core", "axe.min.js"))
	if err != nil {
		testdeps.Missing(t, "axe-core is not fetched (make deps): %v", err)
		return nil
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // root in CI's container
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser (no timeout: it would stop it)
		t.Fatalf("starting chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, base: base, artifacts: artifactsDir(t), axe: string(axe)}
}

// do runs steps with a bound, failing the test on error.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that answers a value, failing the test on error.
func get[T any](b *browser, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// open navigates to path (under base) and waits for the page's main.
func (b *browser) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path), chromedp.WaitVisible(chromedp.CSS("main")))
}

// submit fills the fields (CSS selector -> value) and clicks button, then
// waits for the next page's main.
func (b *browser) submit(fields map[string]string, button string) {
	b.t.Helper()
	for sel, val := range fields {
		b.fill(sel, val)
	}
	b.do("submit "+button, chromedp.Click(chromedp.CSS(button)), chromedp.Sleep(300*time.Millisecond),
		chromedp.WaitVisible(chromedp.CSS("main")))
}

// fill sets the value of the field sel. (chromedp.SetValue cannot set
// an empty value: its argument is dropped on the way.)
func (b *browser) fill(sel, val string) {
	b.t.Helper()
	v, err := json.Marshal(val)
	if err != nil {
		b.t.Fatal(err)
	}
	b.do("fill "+sel, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const s = %q; const e = document.querySelector(s); if (!e) throw new Error("no element " + s); e.value = %s; })()`, sel, v)))
}

// check ticks the checkbox sel unless it is ticked.
func (b *browser) check(sel string) {
	b.t.Helper()
	b.do("tick "+sel, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const s = %q; const e = document.querySelector(s); if (!e) throw new Error("no element " + s); if (!e.checked) e.click(); })()`, sel)))
}

// noValidate turns off the browser's own form checks on the form sel (and
// its email fields' sanitizing, and its fields' length caps), so the server's answer to what an
// attacker would send is what is tested.
func (b *browser) noValidate(sel string) {
	b.t.Helper()
	b.do("novalidate "+sel, chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => {
  const f = document.querySelector(%q);
  f.noValidate = true;
  for (const e of f.querySelectorAll("input[type=email]")) e.type = "text";
  for (const e of f.querySelectorAll("input, textarea")) e.removeAttribute("maxlength");
})()`, sel)))
}

// count is the number of elements matching sel.
func (b *browser) count(sel string) int {
	b.t.Helper()
	return get(b, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
}

// text is the text of the first element matching sel.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(get(b, "read "+sel, chromedp.Text(chromedp.CSS(sel))))
}

// location is the page's path and query.
func (b *browser) location() string {
	b.t.Helper()
	return strings.TrimPrefix(get(b, "location", chromedp.Location()), b.base)
}

// waitText waits until the element sel's text contains want.
func (b *browser) waitText(sel, want string, within time.Duration) string {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil && strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: want text containing %q, have %q (%v)", sel, want, s, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// shot saves a full-page PNG screenshot (quality 100: lower is JPEG) named after the page, and checks the
// page with axe-core: no serious or critical violation.
func (b *browser) shot(name string) {
	b.t.Helper()
	b.shots++
	png := get(b, "screenshot "+name, chromedp.FullScreenshot(100))
	file := filepath.Join(b.artifacts, fmt.Sprintf("%02d-%s.png", b.shots, name))
	if err := os.WriteFile(file, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.checkAccessibility(name)
}

// axeViolation is the part of an axe-core result the check reads.
type axeViolation struct {
	ID     string `json:"id"`
	Impact string `json:"impact"`
	Help   string `json:"help"`
	Nodes  []struct {
		Target []any `json:"target"`
	} `json:"nodes"`
}

// checkAccessibility runs axe-core in the page (DevTools evaluation, which
// the page's CSP does not govern) and fails on serious or critical
// violations, naming each rule and element.
func (b *browser) checkAccessibility(name string) {
	b.t.Helper()
	script := b.axe + `;
(async () => {
  const r = await axe.run(document, {resultTypes: ["violations"]});
  return JSON.stringify(r.violations);
})()`
	raw := get(b, "axe "+name, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
	var vs []axeViolation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		b.t.Fatalf("axe on %s: %v (%q)", name, err, raw)
	}
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			var where []string
			for _, n := range v.Nodes {
				where = append(where, fmt.Sprint(n.Target...))
			}
			b.t.Errorf("accessibility (%s) on %s: %s: %s at %s", v.Impact, name, v.ID, v.Help, strings.Join(where, ", "))
		}
	}
}

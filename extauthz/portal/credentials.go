package portal

// credentialRoutes: the pages of this file (owned by H5 in the issue-15 design; a
// placeholder until they land).
func (p *Portal) credentialRoutes() []route { return nil }

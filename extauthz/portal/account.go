package portal

// accountRoutes: the pages of this file (owned by H5 in the issue-15 design; a
// placeholder until they land).
func (p *Portal) accountRoutes() []route { return nil }

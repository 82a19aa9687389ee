package portal

// modelRoutes: the pages of this file (owned by H6 in the issue-15 design; a
// placeholder until they land).
func (p *Portal) modelRoutes() []route { return nil }

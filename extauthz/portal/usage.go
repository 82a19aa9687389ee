package portal

// usageRoutes: the pages of this file (owned by H6 in the issue-15 design; a
// placeholder until they land).
func (p *Portal) usageRoutes() []route { return nil }

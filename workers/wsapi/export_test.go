package wsapi

// Conns is how many connections s serves, for tests.
func Conns(s *Server) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Draining reports whether Drain has begun, for tests.
func Draining(s *Server) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

package api

// Admin holds the services behind the admin API.
type Admin struct{}

// registerAdmin mounts the admin API under /admin/v1.
func (s *Server) registerAdmin(a *Admin) {}

package supervisor

// dropWatchConnections closes the signal connection of every running
// watcher, as a bus drop would; tests use it to force a reconnect.
func (s *Supervisor) dropWatchConnections() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for w := range s.active {
		w.dropConnection()
	}
}

func (w *watcher) dropConnection() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn != nil {
		w.conn.Close()
	}
}

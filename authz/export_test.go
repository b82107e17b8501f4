package authz

// WaitCache waits until the decision cache has applied pending sets
// (ristretto buffers them).
func (e *External) WaitCache() {
	if e.cache != nil {
		e.cache.rc.Wait()
	}
}

package compute

// HostCopier is a backend that can copy a tensor to the host without
// stalling its device: the copy is queued behind the operations before it
// and the caller goes on queueing work, so a forward pass that caches many
// activations waits once, at its end, instead of once per activation (a
// GPU: pinned staging memory and a copy engine of its own).
type HostCopier interface {
	// ToHostLater queues a float32 copy of t's values as they are now
	// (operations queued later, in-place ones included, do not change it)
	// and returns at once. wait blocks until the copy is on the host and
	// returns it, or the error that kept it from getting there (the
	// device's memory or the host's pinned memory running out, a driver
	// error); then it has no values. wait may be called once; a copy
	// nobody waits for still completes and frees what it held.
	ToHostLater(t Tensor) (wait func() ([]float32, error))
}

// ToHostLater queues a copy of t on a HostCopier; on any other backend it
// copies now (ToHost) and the wait returns that copy. Either way the values
// are t's at the time of the call.
func ToHostLater(b Backend, t Tensor) func() ([]float32, error) {
	if hc, ok := b.(HostCopier); ok {
		return hc.ToHostLater(t)
	}
	data := b.ToHost(t)
	return func() ([]float32, error) { return data, nil }
}

package compute

// DeviceMemory is a backend whose tensors live in a memory of its own (a
// GPU's), not in the host's: a pass's memory is checked against what it
// can still allocate there.
type DeviceMemory interface {
	// FreeBytes is what the device can still give: its free memory plus
	// the blocks the backend holds cached for reuse.
	FreeBytes() uint64
}

// FreeBytes gives what b can still allocate and true when b keeps its
// tensors in a device memory of its own; 0 and false for a backend that
// allocates from the host's memory (the CPU).
func FreeBytes(b Backend) (uint64, bool) {
	if d, ok := b.(DeviceMemory); ok {
		return d.FreeBytes(), true
	}
	return 0, false
}

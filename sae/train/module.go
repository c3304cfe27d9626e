package train

import (
	"fmt"
	"strings"

	"github.com/loupe-dev/loupe/sae/activations"
)

// Param is one trainable tensor. Value and Grad have the same length;
// Backward overwrites Grad, the optimizer reads it and updates Value.
type Param struct {
	Name  string
	Shape []int
	Value []float32
	Grad  []float32
	// NoUpdate marks a parameter that is kept in checkpoints but changed only
	// by the module itself (a running threshold), never by the optimizer.
	NoUpdate bool
}

// Stat is one named number a step reports (loss, L0, FVU, dead %).
type Stat struct {
	Name  string
	Value float64
}

// Stats is a step's statistics in display order.
type Stats []Stat

// Get returns a statistic by name and whether it is there.
func (s Stats) Get(name string) (float64, bool) {
	for _, st := range s {
		if st.Name == name {
			return st.Value, true
		}
	}
	return 0, false
}

func (s Stats) String() string {
	var b strings.Builder
	for i, st := range s {
		if i > 0 {
			b.WriteString("  ")
		}
		fmt.Fprintf(&b, "%s %.4g", st.Name, st.Value)
	}
	return b.String()
}

// Module is what the trainer trains.
type Module interface {
	// Params lists the parameters, always the same slices in the same order.
	Params() []*Param
	// Backward computes the loss on a batch, overwrites every parameter's
	// Grad and returns the step's statistics, the loss first. step counts
	// from 0.
	Backward(b *activations.Batch, step int) (Stats, error)
	// AfterUpdate runs after each optimizer step.
	AfterUpdate()
	// State and SetState carry what a resume needs besides the parameters.
	State() ([]byte, error)
	SetState([]byte) error
}

// DeviceModule is a Module whose parameters and optimizer state live on a
// device (a GPU): the trainer's Adam then keeps only the update count, and
// the host copies (Params' Value, Adam's M and V, the module's State) are
// brought up to date only when a checkpoint or the end of a run needs
// them.
type DeviceModule interface {
	Module
	// Update is the optimizer step on the device with a's hyperparameters
	// and update count (already incremented) and learning rate lr, and
	// whatever AfterUpdate does on the host.
	Update(a *Adam, lr float64) error
	// SyncHost copies the parameters into Params' Value, the moments into
	// a.M and a.V, and the module's own state to the host.
	SyncHost(a *Adam) error
	// SyncDevice copies them the other way (after a resume).
	SyncDevice(a *Adam) error
}

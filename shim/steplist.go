package shim

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Step is one named startup step. Steps run in order; the first failure
// stops startup. Undo, when set, reverses what Run made: teardown runs the
// Undo of every completed step in reverse order, whether startup failed
// later or the VM ran and ended. A failing Run cleans up its own half.
type Step struct {
	Name    string
	Timeout time.Duration
	Run     func(ctx context.Context) error
	Undo    func(ctx context.Context) error
}

// StepList is an ordered list of steps. Its edits return a new list and
// leave the receiver as it was, so that a variant can start from another.
type StepList []Step

// Names lists the steps' names in order.
func (l StepList) Names() []string {
	names := make([]string, len(l))
	for i, st := range l {
		names[i] = st.Name
	}
	return names
}

// Index is the position of the step called name, or -1.
func (l StepList) Index(name string) int {
	return slices.IndexFunc(l, func(st Step) bool { return st.Name == name })
}

// Append adds steps at the end.
func (l StepList) Append(steps ...Step) StepList {
	return slices.Concat(l, steps)
}

// InsertAfter adds steps right after the step called name.
func (l StepList) InsertAfter(name string, steps ...Step) (StepList, error) {
	i, err := l.find(name)
	if err != nil {
		return nil, err
	}
	return slices.Concat(l[:i+1], steps, l[i+1:]), nil
}

// InsertBefore adds steps right before the step called name.
func (l StepList) InsertBefore(name string, steps ...Step) (StepList, error) {
	i, err := l.find(name)
	if err != nil {
		return nil, err
	}
	return slices.Concat(l[:i], steps, l[i:]), nil
}

// Remove drops the step called name.
func (l StepList) Remove(name string) (StepList, error) {
	i, err := l.find(name)
	if err != nil {
		return nil, err
	}
	return slices.Concat(l[:i], l[i+1:]), nil
}

// Replace puts step where the step called name is.
func (l StepList) Replace(name string, step Step) (StepList, error) {
	i, err := l.find(name)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(l)
	out[i] = step
	return out, nil
}

// find is Index for edits: a name that is not there, or twice, is a
// mistake in the list's definition.
func (l StepList) find(name string) (int, error) {
	i := l.Index(name)
	if i < 0 {
		return 0, fmt.Errorf("startup steps: no step %q in %v", name, l.Names())
	}
	if slices.ContainsFunc(l[i+1:], func(st Step) bool { return st.Name == name }) {
		return 0, fmt.Errorf("startup steps: two steps are called %q", name)
	}
	return i, nil
}

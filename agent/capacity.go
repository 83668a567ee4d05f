package agent

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Resources is what the capacity checks read of the host; HostResources
// is the real one.
type Resources interface {
	// MemoryMiB is the host's memory, /proc/meminfo's MemTotal.
	MemoryMiB() (int, error)
	// CPUs is how many CPUs the host has online.
	CPUs() int
}

// DefaultMemoryOvercommit gives running VMs no more memory than the host
// has: a guest that touches all of its RAM on an overcommitted host gets
// its QEMU killed by the kernel, which is worse than a refused start.
const DefaultMemoryOvercommit = 1.0

// DefaultMemoryReserve is the host memory no VM may have when
// Config.MemoryReserveMiB is negative: 1 GiB, or a tenth of a small host,
// for the kernel, the agent, the shims and QEMU's own overhead.
func DefaultMemoryReserve(hostMiB int) int { return min(1024, hostMiB/10) }

// HostResources reads the host's own memory and CPUs.
type HostResources struct{}

// MemoryMiB reads MemTotal from /proc/meminfo.
func (HostResources) MemoryMiB() (int, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return parseMemTotal(f)
}

// CPUs counts the CPUs online, not the agent's own affinity: each VM runs
// in a unit of its own. Where sysfs cannot say, it is the agent's count.
func (HostResources) CPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return runtime.NumCPU()
	}
	n, err := countCPUList(strings.TrimSpace(string(b)))
	if err != nil || n == 0 {
		return runtime.NumCPU()
	}
	return n
}

// parseMemTotal reads "MemTotal: 24683748 kB" from a meminfo file.
func parseMemTotal(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("meminfo: MemTotal %q", rest)
		}
		return kb >> 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("meminfo has no MemTotal")
}

// maxCPUs is beyond any kernel's CPU count (its NR_CPUS is at most 8192).
const maxCPUs = 1 << 16

// countCPUList counts the CPUs of a kernel CPU list such as "0-3,6,8-9".
func countCPUList(list string) (int, error) {
	n := 0
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a < 0 || b < a || b >= maxCPUs {
			return 0, fmt.Errorf("CPU list %q", list)
		}
		n += b - a + 1
	}
	if n > maxCPUs {
		return 0, fmt.Errorf("CPU list %q names CPUs twice", list)
	}
	return n, nil
}

// memoryBudget is the host's memory and what running VMs may hold of it
// together: MemTotal × overcommit, less the reserve.
type memoryBudget struct {
	hostMiB, reserveMiB, limitMiB int
	overcommit                    float64
}

func (a *Agent) memoryBudget() (memoryBudget, error) {
	host, err := a.cfg.Resources.MemoryMiB()
	if err != nil {
		return memoryBudget{}, errdefs.Internal("read the host's memory: %v", err)
	}
	b := memoryBudget{hostMiB: host, reserveMiB: a.cfg.MemoryReserveMiB, overcommit: a.cfg.MemoryOvercommit}
	if b.reserveMiB < 0 {
		b.reserveMiB = DefaultMemoryReserve(host)
	}
	b.limitMiB = max(int(float64(host)*b.overcommit)-b.reserveMiB, 0)
	return b, nil
}

// logCapacity says what VMs may have of the host, or that it cannot be read.
func (a *Agent) logCapacity() {
	b, err := a.memoryBudget()
	if err != nil {
		a.log.Warn("host memory unreadable: creates and starts are refused", "ERROR", err.Error())
		return
	}
	a.log.Info("host capacity", "CPUS", a.cfg.Resources.CPUs(), "MEMORY_MIB", b.hostMiB, "RESERVE_MIB", b.reserveMiB,
		"OVERCOMMIT", b.overcommit, "VM_MEMORY_MIB", b.limitMiB)
}

func (b memoryBudget) String() string {
	return fmt.Sprintf("the host's %d MiB at overcommit %s less a %d MiB reserve allow %d MiB",
		b.hostMiB, ratio(b.overcommit), b.reserveMiB, b.limitMiB)
}

// ratio spells an overcommit ratio as 1.0 or 1.5.
func ratio(r float64) string {
	s := strconv.FormatFloat(r, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

// checkFits refuses at create a VM that can never run here: more vCPUs
// than the host has CPUs, more memory than the host has or than running
// VMs may hold together. vCPUs are overcommitted across VMs, never in one.
func (a *Agent) checkFits(spec *vmspec.Spec) error {
	if cpus := a.cfg.Resources.CPUs(); spec.CPUs > cpus {
		return errdefs.Exhausted("cpuCores", "%d vCPUs asked, the host has %d CPUs", spec.CPUs, cpus)
	}
	b, err := a.memoryBudget()
	if err != nil {
		return err
	}
	switch {
	case spec.MemoryMiB > b.hostMiB:
		return errdefs.Exhausted("ramGB", "%d MiB asked, the host has %d MiB", spec.MemoryMiB, b.hostMiB)
	case spec.MemoryMiB > b.limitMiB:
		return errdefs.Exhausted("ramGB", "%d MiB asked, %s to all VMs together", spec.MemoryMiB, b)
	}
	return nil
}

// admit holds the VM's memory for its start, or refuses the start when the
// VMs that run leave too little. The hold lasts until release, which the
// caller calls once the start's outcome is in the VM's record, so that two
// starts at once cannot both take the last of the memory.
func (a *Agent) admit(rec *record) (release func(), err error) {
	a.capMu.Lock()
	defer a.capMu.Unlock()
	need := rec.currentSpec().MemoryMiB
	if err := a.roomFor(rec.id, need); err != nil {
		return nil, err
	}
	a.starting[rec.id] = need
	return func() {
		a.capMu.Lock()
		delete(a.starting, rec.id)
		a.capMu.Unlock()
	}, nil
}

// checkRoom refuses a start of the VM that the VMs running now leave no
// room for, holding nothing.
func (a *Agent) checkRoom(spec *vmspec.Spec) error {
	a.capMu.Lock()
	defer a.capMu.Unlock()
	return a.roomFor(spec.ID, spec.MemoryMiB)
}

// roomFor refuses a start of VM id needing need MiB that would take the
// VMs that run, or are starting, beyond the budget. The caller holds capMu.
func (a *Agent) roomFor(id string, need int) error {
	b, err := a.memoryBudget()
	if err != nil {
		return err
	}
	held := a.heldMiB(id)
	if held+need <= b.limitMiB {
		return nil
	}
	return errdefs.Exhausted("", "VM %s needs %d MiB, %d MiB free: %s, and running VMs hold %d MiB",
		id, need, max(b.limitMiB-held, 0), b, held)
}

// heldMiB is the memory of every VM but except that runs or is starting,
// by the agent's records. The caller holds capMu.
func (a *Agent) heldMiB(except string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	held := 0
	for id, rec := range a.vms {
		if id == except {
			continue
		}
		if mib, ok := a.starting[id]; ok {
			held += mib
			continue
		}
		rec.mu.Lock()
		if !rec.status.Terminal() {
			held += rec.spec.MemoryMiB
		}
		rec.mu.Unlock()
	}
	return held
}

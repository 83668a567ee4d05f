package qemu_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/qemu"
)

// TestQEMUTakesTheWindowsPlatform starts a Windows guest's QEMU under TCG
// and reads back over QMP what landed: every enlightenment TCG gets set on
// the CPU with its value, the others off, no HPET, and the sound card on
// its audio backend. Then it proves why TCG goes without the rest: QEMU
// refuses each KVM-only flag added on its own, and the other missing ones
// need a KVM-only flag.
func TestQEMUTakesTheWindowsPlatform(t *testing.T) {
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), startDeadline)
	defer cancel()
	cfg := base()
	cfg.Windows, cfg.Audio = true, true
	c := runWithQMP(t, ctx, &cfg, nil).qmp
	var cpus []struct {
		QOMPath string `json:"qom-path"`
	}
	if err := c.Execute(ctx, "query-cpus-fast", nil, &cpus); err != nil || len(cpus) == 0 {
		t.Fatalf("query-cpus-fast: %v %+v", err, cpus)
	}
	get := func(path, property string) any {
		var v any
		if err := c.Execute(ctx, "qom-get", map[string]any{"path": path, "property": property}, &v); err != nil {
			t.Fatalf("qom-get %s %s: %v", path, property, err)
		}
		return v
	}
	tcg := qemu.HyperVFlags(qemu.AccelTCG)
	for _, f := range tcg {
		want := any(true)
		if f.Value != "on" {
			n, err := strconv.ParseUint(f.Value, 0, 32)
			if err != nil {
				t.Fatalf("%s=%s: %v", f.Name, f.Value, err)
			}
			want = float64(n)
		}
		if got := get(cpus[0].QOMPath, f.Name); got != want {
			t.Errorf("%s is %v on the CPU, want %v", f.Name, got, want)
		}
	}
	inTCG := func(name string) bool {
		return slices.ContainsFunc(tcg, func(g qemu.HyperVFlag) bool { return g.Name == name })
	}
	var left []qemu.HyperVFlag
	for _, f := range qemu.HyperVFlags(qemu.AccelKVM) {
		if !inTCG(f.Name) {
			left = append(left, f)
			if got := get(cpus[0].QOMPath, f.Name); got != false {
				t.Errorf("%s, left out under TCG, is %v on the CPU", f.Name, got)
			}
		}
	}
	if got := get("/machine", "hpet"); got != false {
		t.Errorf("the machine's hpet is %v, want off", got)
	}
	if got := get(qemu.PeripheralPath("sound-codec-0"), "audiodev"); got != "audio" {
		t.Errorf("the codec plays to %v, want the audio backend", got)
	}

	var needKVM, withThem []string
	for _, f := range left {
		if !f.KVMOnly {
			missing := slices.DeleteFunc(slices.Clone(f.Needs), inTCG)
			if len(missing) == 0 {
				t.Errorf("%s is left out under TCG, yet neither needs KVM nor a flag that does", f.Name)
			}
			withThem = append(withThem, fmt.Sprintf("%s (needs %s)", f.Name, strings.Join(missing, ", ")))
			continue
		}
		cmd, err := qemu.Command(ctx, "", &cfg)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.Index(cmd.Args, "-cpu")
		cmd.Args[i+1] += "," + f.Name + "=" + f.Value
		vm, err := startWithQMP(t, ctx, cmd)
		if err == nil {
			t.Errorf("QEMU takes %s under TCG now: give it to TCG (HyperVFlag.KVMOnly)", f.Name)
			continue
		}
		<-vm.exited
		refusal := strings.TrimSpace(vm.stderr.String())
		if refusal == "" {
			t.Errorf("%s: QEMU did not come up, and said nothing (QMP: %v)", f.Name, err)
		}
		needKVM = append(needKVM, fmt.Sprintf("%s (QEMU under TCG: %s)", f.Name, refusal))
	}
	t.Logf("need KVM: %s; left out with them: %s", strings.Join(needKVM, "; "), strings.Join(withThem, ", "))
}

package agent

import (
	"context"
	"math"
	"os"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/infinibay/infinivirt/agent/installs"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/atomicfile"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/unattended"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Creating a VM with an unattended install: the request is checked and the
// media are prepared here; agent/installs settles the install once the shim
// records its end.

// Firmware defaults: Debian's ovmf package. Windows VMs boot UEFI with
// Secure Boot and Microsoft's keys enrolled.
const (
	DefaultUEFICode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
	DefaultUEFIVars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"
)

// Limits of an install request.
const (
	maxKernelArgs = 1024
	// answerTimeout bounds building the answer ISO and extracting the
	// Ubuntu installer's kernel and initrd (tens of MB read from the ISO).
	answerTimeout = 2 * time.Minute
)

// installPlan is what a create with install needs beyond the spec: the
// decoded InstallConfig, with its secrets, kept only until the answer ISO
// is written.
type installPlan struct {
	os         string
	config     unattended.InstallConfig
	kernelArgs string
}

func isWindows(os string) bool { return os == unattended.OSWindows10 || os == unattended.OSWindows11 }

// planPlatform checks the platform and install parts of a create request
// and fills the spec's firmware, TPM and install sections. Nothing is
// created yet: a refusal leaves nothing behind.
func (a *Agent) planPlatform(in api.CreateVMInput, spec *vmspec.Spec) (*installPlan, error) {
	l := a.cfg.Layout
	if isWindows(spec.OS) {
		code, vars := a.uefiFiles()
		for _, p := range []string{code, vars} {
			if _, err := os.Stat(p); err != nil {
				return nil, errdefs.FailedPrecondition("os %s boots UEFI with Secure Boot, but %s is missing (Debian package ovmf)", spec.OS, p)
			}
		}
		spec.Firmware = &vmspec.Firmware{Code: code, Vars: l.UEFIVars(spec.ID), SecureBoot: true}
	}
	if spec.OS == unattended.OSWindows11 {
		// Windows 11 requires a TPM 2.0; the shim runs swtpm for it.
		spec.AddDevice(vmspec.NewDevice(spec.FreeName(api.DeviceTPM), vmspec.TPM{StateDir: l.TPMStateDir(spec.ID)}))
	}
	req := in.Install
	if req == nil {
		if in.VirtioWinPath != "" {
			return nil, errdefs.Invalid("virtioWinPath", "is used only by a Windows install")
		}
		return nil, nil
	}
	osName := req.OS
	if osName == "" {
		osName = spec.OS
	}
	if !slices.Contains(vmspec.InstallOSes, osName) {
		return nil, errdefs.Invalid("install.os", "unattended install supports %s, got %q", strings.Join(vmspec.InstallOSes, ", "), req.OS)
	}
	if osName != spec.OS {
		return nil, errdefs.Invalid("install.os", "must match the VM's os %q, got %q", spec.OS, osName)
	}
	if in.ISOPath == "" {
		return nil, errdefs.Invalid("isoPath", "is required with install: the installer boots from the OS ISO")
	}
	if in.Boot != nil {
		return nil, errdefs.Invalid("boot", "cannot be given with install: the installer boots from the OS ISO (use install.kernelArgs for extra kernel arguments)")
	}
	if req.Config == nil {
		return nil, errdefs.Invalid("install.config", "is required: username, password, locale, timezone, hostname, ...")
	}
	cfg := fromAPIInstallConfig(*req.Config)
	if err := cfg.Validate(osName); err != nil {
		return nil, prefixField("install.config.", err)
	}
	timeout := vmspec.DefaultInstallTimeout(osName)
	if m := req.TimeoutMinutes; m != 0 {
		d := time.Duration(math.Round(m*60)) * time.Second
		if math.IsNaN(m) || math.IsInf(m, 0) || d < time.Second || d > vmspec.MaxInstallTimeout {
			return nil, errdefs.Invalid("install.timeoutMinutes", "must be at least one second and at most %v minutes, got %v", vmspec.MaxInstallTimeout.Minutes(), m)
		}
		timeout = d
	}
	if err := checkKernelArgs(osName, req.KernelArgs); err != nil {
		return nil, err
	}
	inst := &vmspec.Install{
		State:             api.InstallPending,
		OS:                osName,
		AnswerISO:         l.AnswerISO(spec.ID),
		BootOnce:          vmspec.BootOnceISO,
		BootFromDiskAfter: req.BootFromDiskAfter == nil || *req.BootFromDiskAfter,
		TimeoutSec:        int(timeout / time.Second),
	}
	if osName == unattended.OSUbuntu {
		inst.BootOnce = "" // its kernel boots directly
	}
	switch {
	case isWindows(osName):
		iso, err := a.findVirtioWin(in.VirtioWinPath)
		if err != nil {
			return nil, err
		}
		inst.VirtioWinISO = iso
	case in.VirtioWinPath != "":
		return nil, errdefs.Invalid("virtioWinPath", "is used only by a Windows install")
	}
	spec.Install = inst
	if used := spec.AHCIPortsUsed(); used > vmspec.MaxCDROMs {
		return nil, errdefs.Invalid("devices", "the AHCI controller's %d ports cannot hold the request's %d CD-ROM drives and %d sata disks beside the install's own media",
			vmspec.MaxCDROMs, len(spec.CDROMs()), spec.SATADisks())
	}
	return &installPlan{os: osName, config: cfg, kernelArgs: req.KernelArgs}, nil
}

// fromAPIInstallConfig carries every field of the wire's install config to
// pkg/unattended's (install_test.go holds the two to one JSON form).
func fromAPIInstallConfig(c api.InstallConfig) unattended.InstallConfig {
	out := unattended.InstallConfig{
		Username: c.Username, Password: c.Password, ProductKey: c.ProductKey,
		Locale: c.Locale, Timezone: c.Timezone, Hostname: c.Hostname, Keyboard: c.Keyboard,
	}
	if c.Applications != nil {
		out.Applications = make([]unattended.Application, len(c.Applications))
		for i, a := range c.Applications {
			out.Applications[i] = unattended.Application{Name: a.Name, Command: a.Command}
		}
	}
	if c.FirstBootScripts != nil {
		out.FirstBootScripts = make([]unattended.Script, len(c.FirstBootScripts))
		for i, s := range c.FirstBootScripts {
			out.FirstBootScripts[i] = unattended.Script{Name: s.Name, Language: unattended.ScriptLanguage(s.Language), Content: s.Content}
		}
	}
	return out
}

// prefixField moves a validation error's field under prefix, keeping its class and message.
func prefixField(prefix string, err error) error {
	e := errdefs.As(err)
	if e.Code != errdefs.CodeInvalidArgument {
		return err
	}
	field := strings.TrimSuffix(prefix, ".")
	if e.Field != "" {
		field = prefix + e.Field
	}
	return &errdefs.Error{Code: e.Code, Field: field, Message: e.Message}
}

func checkKernelArgs(os, args string) error {
	if args == "" {
		return nil
	}
	if os != unattended.OSUbuntu {
		return errdefs.Invalid("install.kernelArgs", "only the Ubuntu installer boots a kernel directly; %s boots from its ISO", os)
	}
	if len(args) > maxKernelArgs {
		return errdefs.Invalid("install.kernelArgs", "is longer than %d bytes", maxKernelArgs)
	}
	for _, r := range args {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return errdefs.Invalid("install.kernelArgs", "must not contain control characters or invalid UTF-8")
		}
	}
	if strings.Contains(" "+args+" ", " --- ") {
		return errdefs.Invalid("install.kernelArgs", "must not contain ---: the installer's arguments end there")
	}
	return nil
}

// findVirtioWin picks the virtio-win ISO: the request's, the agent's
// setting, or the first of the usual places.
func (a *Agent) findVirtioWin(requested string) (string, error) {
	if requested != "" {
		resolved, err := a.checkMedium("virtioWinPath", requested)
		if err != nil {
			return "", err
		}
		p, err := unattended.FindVirtioWin(resolved, nil)
		if err != nil {
			return "", errdefs.Invalid("virtioWinPath", "%s", errdefs.As(err).Message)
		}
		return p, nil
	}
	p, err := unattended.FindVirtioWin(a.cfg.VirtioWin, nil)
	if err != nil {
		return "", errdefs.FailedPrecondition("a Windows install needs the virtio-win driver ISO: %s; set the agent's --virtio-win or the request's virtioWinPath", errdefs.As(err).Message)
	}
	if err := vmspec.CheckHostPath("virtioWinPath", p); err != nil {
		return "", errdefs.FailedPrecondition("virtio-win ISO %s: %s", p, errdefs.As(err).Message)
	}
	return p, nil
}

func (a *Agent) uefiFiles() (code, vars string) {
	code, vars = a.cfg.UEFICode, a.cfg.UEFIVars
	if code == "" {
		code = DefaultUEFICode
	}
	if vars == "" {
		vars = DefaultUEFIVars
	}
	return code, vars
}

// preparePlatform writes the VM's own platform files and install media into
// its directory, which the caller removes on any error: the UEFI variable
// store, the answer ISO (mode 0600: it holds the install's secrets) and,
// for Ubuntu, the installer's kernel and initrd, which it boots directly.
func (a *Agent) preparePlatform(ctx context.Context, spec *vmspec.Spec, plan *installPlan) error {
	if f := spec.Firmware; f != nil {
		_, template := a.uefiFiles()
		b, err := os.ReadFile(template)
		if err != nil {
			return errdefs.Internal("UEFI variable store: %v", err)
		}
		if err := atomicfile.Write(f.Vars, b, 0o600); err != nil {
			return errdefs.Internal("UEFI variable store: %v", err)
		}
	}
	if plan == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	dir := a.cfg.Layout.InstallDir(spec.ID)
	if err := os.Mkdir(dir, 0o711); err != nil {
		return errdefs.Internal("install directory: %v", err)
	}
	if err := unattended.BuildAnswerISO(ctx, plan.os, plan.config, spec.Install.AnswerISO); err != nil {
		if e := errdefs.As(err); e.Code == errdefs.CodeInvalidArgument {
			return prefixField("install.config.", err)
		}
		return errdefs.Internal("answer ISO: %v", err)
	}
	if plan.os == unattended.OSUbuntu {
		kernel, initrd, err := unattended.ExtractUbuntuBoot(ctx, spec.ISOPath(), dir)
		if err != nil {
			if e := errdefs.As(err); e.Code == errdefs.CodeInvalidArgument {
				return &errdefs.Error{Code: e.Code, Field: e.Field, Message: err.Error()}
			}
			return errdefs.Internal("Ubuntu installer boot files: %v", err)
		}
		cmdline := unattended.UbuntuKernelArgs
		if plan.kernelArgs != "" {
			cmdline = strings.TrimSuffix(cmdline, "---") + plan.kernelArgs + " ---"
		}
		spec.Boot = &api.DirectBoot{Kernel: kernel, Initrd: initrd, Cmdline: cmdline}
	}
	if err := spec.Validate(); err != nil {
		return errdefs.Internal("install spec: %v", err)
	}
	return nil
}

// beginInstallRun marks an unfinished install as running from now, before
// its unit starts (see installs.Settler.BeginRun). The caller holds the
// VM's operation lock.
func (a *Agent) beginInstallRun(ctx context.Context, rec *record) error {
	return a.installs.BeginRun(ctx, installVM{a, rec}, time.Now())
}

// watchInstall settles an install once the shim records its end.
func (a *Agent) watchInstall(rec *record, evs []api.Event) {
	if installs.Ended(evs) {
		go a.settleInstall(rec)
	}
}

// settleInstalls settles, at agent start, the installs whose end was
// recorded while no agent listened.
func (a *Agent) settleInstalls() {
	for _, rec := range a.records() {
		if installs.Unsettled(rec.view()) {
			go a.settleInstall(rec)
		}
	}
}

// settleInstall takes the VM's operation lock, settles its install, and
// boots the installed system when the install asked for it.
func (a *Agent) settleInstall(rec *record) {
	if a.ctx == nil {
		return // not started: Start settles what the logs say ended
	}
	unlock, err := a.lockRecord(a.ctx, rec)
	if err != nil {
		return // deleted meanwhile, or the agent stops
	}
	defer unlock()
	in := a.installs.Settle(a.ctx, installVM{a, rec})
	if in == nil || in.State != api.InstallDone || !in.BootFromDiskAfter {
		return
	}
	if err := a.startUnit(a.ctx, rec, api.ReasonInstalled); err != nil {
		a.log.Error("booting the installed system failed", logging.KeyVM, rec.id, "ERROR", err.Error())
	}
}

// installVM is a VM as install settling sees it.
type installVM struct {
	a   *Agent
	rec *record
}

func (v installVM) ID() string         { return v.rec.id }
func (v installVM) View() api.VM       { return v.rec.view() }
func (v installVM) Spec() *vmspec.Spec { return v.rec.currentSpec() }

func (v installVM) UpdateSpec(change func(*vmspec.Spec) error) error {
	return v.a.updateSpec(v.rec, change)
}

func (v installVM) WaitUnitGone(ctx context.Context, limit time.Duration) error {
	return v.a.waitUnitGone(ctx, v.rec.id, limit)
}

func (v installVM) AppendEvent(ctx context.Context, e api.Event) error {
	return v.a.appendEvent(ctx, v.rec, e)
}

// updateSpec saves a changed copy of the VM's spec and makes it current.
// The caller holds the VM's operation lock, so no other writer races it.
func (a *Agent) updateSpec(rec *record, change func(*vmspec.Spec) error) error {
	if err := rec.specReadable(); err != nil {
		return err
	}
	rec.mu.Lock()
	ns := rec.spec.Clone()
	rec.mu.Unlock()
	if err := change(ns); err != nil {
		return err
	}
	if err := ns.Validate(); err != nil {
		return errdefs.Internal("updated spec: %v", err)
	}
	if err := ns.Save(a.cfg.Layout.SpecFile(rec.id)); err != nil {
		return errdefs.Internal("save spec: %v", err)
	}
	rec.mu.Lock()
	rec.spec = ns
	rec.mu.Unlock()
	return nil
}

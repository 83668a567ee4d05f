package cli

import (
	"bytes"

	"github.com/spf13/cobra"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// installFlags are vm create's flags for an unattended install. The install
// config, which holds the password, comes from a file, never the command
// line.
type installFlags struct {
	os, configFile, kernelArgs, virtioWin string
	timeoutMinutes                        float64
	noBootAfter                           bool
}

func (f *installFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&f.configFile, "install-config", "", "unattended install: InstallConfig JSON file (username, password, locale, timezone, hostname, ...); needs --iso")
	fs.StringVar(&f.os, "install-os", "", "unattended install: windows10, windows11, ubuntu or fedora (default: --os)")
	fs.Float64Var(&f.timeoutMinutes, "install-timeout-minutes", 0, "unattended install: timeout (default by OS: ubuntu 45, fedora 60, windows10 90, windows11 120)")
	fs.StringVar(&f.kernelArgs, "install-kernel-args", "", "unattended install: extra kernel arguments for a directly booted installer (ubuntu)")
	fs.BoolVar(&f.noBootAfter, "no-boot-after-install", false, "unattended install: leave the VM off once installed")
	fs.StringVar(&f.virtioWin, "virtio-win", "", "virtio-win driver ISO for a Windows install (default: the agent's)")
}

// apply adds the install to in when --install-config or --install-os is set.
func (f *installFlags) apply(in *api.CreateVMInput) error {
	in.VirtioWinPath = f.virtioWin
	if f.configFile == "" && f.os == "" {
		return nil
	}
	if f.configFile == "" {
		return errdefs.Invalid("install-config", "an unattended install needs --install-config FILE.json")
	}
	raw, err := readFileOrStdin(f.configFile)
	if err != nil {
		return err
	}
	// Strictly, as the agent would: a misspelt field must not vanish on
	// its way there.
	var cfg api.InstallConfig
	if err := api.Decode(bytes.NewReader(raw), &cfg, "install-config"); err != nil {
		e := errdefs.As(err)
		return errdefs.Invalid(e.Field, "%s: %s", f.configFile, e.Message)
	}
	in.Install = &api.InstallRequest{
		OS: f.os, Config: &cfg, TimeoutMinutes: f.timeoutMinutes, KernelArgs: f.kernelArgs,
	}
	if f.noBootAfter {
		no := false
		in.Install.BootFromDiskAfter = &no
	}
	return nil
}

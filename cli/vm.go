package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/infinibay/infinivirt/pkg/agentclient"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

func vmCommand(g *globals) *cobra.Command {
	vm := &cobra.Command{Use: "vm", Short: "Create, inspect, power and delete VMs"}
	vm.AddCommand(vmList(g), vmGet(g), vmCreate(g), vmDelete(g), vmConsole(g), vmBlock(g))
	vm.AddCommand(vmNetworkCommands(g)...)
	vm.AddCommand(vmCDROMCommand(g))
	vm.AddCommand(vmDiskCommand(g))
	vm.AddCommand(vmSnapshotCommand(g))
	vm.AddCommand(vmPCICommand(g))
	vm.AddCommand(vmBalloon(g))
	vm.AddCommand(vmUSBCommand(g))
	for _, op := range api.PowerOps {
		vm.AddCommand(vmPower(g, op))
	}
	return vm
}

func vmList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List VMs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) ([]api.VM, error) {
				return c.List(ctx)
			}, func(vms []api.VM) func(*tabwriter.Writer) { return vmTable(vms...) })
		},
	}
}

func vmGet(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "get VM",
		Short:             "Show one VM",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.VM, error) {
				return c.Get(ctx, args[0])
			}, vmDetail)
		},
	}
}

func vmCreate(g *globals) *cobra.Command {
	var (
		file, passwordFile string
		noStart, audio     bool
		balloon            bool
		in                 api.CreateVMInput
		boot               api.DirectBoot
		install            installFlags
		devices            createDeviceFlags
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create and boot a VM (from flags, or a CreateVMInput JSON file with -f)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file != "" {
				body, err := readFileOrStdin(file)
				if err != nil {
					return err
				}
				return do(g, func(ctx context.Context, c *agentclient.Client) (api.VM, error) {
					return c.CreateRaw(ctx, body)
				}, vmRow)
			}
			if passwordFile != "" {
				b, err := os.ReadFile(passwordFile)
				if err != nil {
					return err
				}
				in.GraphicPassword = string(trimNewline(b))
			} else if in.GraphicPassword == "" {
				in.GraphicPassword = os.Getenv("INFINIVIRT_GRAPHIC_PASSWORD")
			}
			if boot.Kernel != "" {
				in.Boot = &boot
			}
			if noStart {
				f := false
				in.Start = &f
			}
			if cmd.Flags().Changed("audio") {
				in.Audio = &audio
			}
			if cmd.Flags().Changed("balloon") {
				in.Balloon = &balloon
			}
			if err := install.apply(&in); err != nil {
				return err
			}
			if err := devices.apply(&in); err != nil {
				return err
			}
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.VM, error) {
				return c.Create(ctx, in)
			}, vmRow)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "CreateVMInput JSON file ('-' for stdin); other flags are ignored")
	f.StringVar(&in.Name, "name", "", "display name")
	f.StringVar(&in.InternalName, "uuid", "", "VM UUID (internalName)")
	f.StringVar(&in.OS, "os", "linux", "windows10, windows11, ubuntu, fedora or linux")
	f.IntVar(&in.CPUCores, "cpus", 1, "vCPUs")
	f.Float64Var(&in.RAMGB, "ram-gb", 1, "RAM in GiB (0.125 = 128 MiB)")
	f.Float64Var(&in.DiskSizeGB, "disk-gb", 10, "disk size in GiB")
	f.StringVar(&in.DiskFormat, "disk-format", "", "qcow2 (default) or raw")
	f.StringVar(&in.DiskImage, "disk-image", "", "make the disk from this store image (image list)")
	f.StringVar((*string)(&in.DiskClone), "disk-clone", "", "how, with --disk-image: linked (default; a thin overlay) or full (a copy)")
	f.StringVar(&in.MACAddress, "mac", "", "MAC address (generated when empty)")
	f.StringVar(&in.NetworkBridge, "bridge", "", "bridge to attach the NIC to")
	f.StringVar(&in.GraphicProtocol, "graphic-protocol", "vnc", "vnc or spice")
	f.IntVar(&in.GraphicPort, "graphic-port", 0, "display port (0 allocates)")
	f.StringVar(&passwordFile, "graphic-password-file", "", "file holding the display password (else env INFINIVIRT_GRAPHIC_PASSWORD)")
	f.StringVar(&in.GPUPCIAddress, "gpu", "", "GPU PCI address for passthrough")
	f.StringVar(&in.ISOPath, "iso", "", "install ISO path")
	f.StringVar(&in.Accel, "accel", "", "kvm or tcg (default: the host's)")
	f.StringVar(&boot.Kernel, "kernel", "", "direct boot: kernel path")
	f.StringVar(&boot.Initrd, "initrd", "", "direct boot: initrd path")
	f.StringVar(&boot.Cmdline, "cmdline", "", "direct boot: kernel command line")
	f.IntVar(&in.ShutdownTimeoutSec, "shutdown-timeout", 0, "seconds of ACPI grace before forcing off (default 120)")
	f.BoolVar(&in.Autostart, "autostart", false, "boot with the host")
	f.BoolVar(&noStart, "no-start", false, "define only, do not boot")
	f.BoolVar(&audio, "audio", false, "a sound card (default: on for windows10, windows11, ubuntu and fedora; --audio=false turns it off)")
	f.BoolVar(&balloon, "balloon", true, "a memory balloon (--balloon=false leaves it out, and the VM's memory cannot be reclaimed while it runs)")
	f.StringVar(&in.DepartmentID, "department", "", "department whose firewall the VM joins (default: default)")
	install.register(cmd)
	devices.register(cmd)
	completeFlag(cmd, "os", "windows10", "windows11", "ubuntu", "fedora", "linux")
	completeFlag(cmd, "graphic-protocol", "vnc", "spice")
	completeFlag(cmd, "accel", "kvm", "tcg")
	completeFlag(cmd, "install-os", "windows10", "windows11", "ubuntu", "fedora")
	return cmd
}

func vmDelete(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:               "delete VM",
		Short:             "Delete a VM that is off (--force powers it off first)",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			if err := g.client().Delete(ctx, args[0], force); err != nil {
				return err
			}
			return g.print(map[string]string{"deleted": args[0]}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "deleted %s\n", args[0])
			})
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "force the VM off first")
	return cmd
}

func vmConsole(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "console VM",
		Short:             "Print the tail of the VM's serial console",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := g.ctx()
			defer cancel()
			s, err := g.client().Console(ctx, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(g.out, s)
			return err
		},
	}
}

func vmBlock(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               "block VM",
		Short:             "List a running VM's block devices: disks and CD-ROMs, with their media",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.BlockDevices, error) {
				return c.Block(ctx, args[0])
			}, blockTable)
		},
	}
}

func blockTable(b api.BlockDevices) func(*tabwriter.Writer) {
	return func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "NAME\tFORMAT\tMODE\tMEDIUM\tFILE")
		for _, d := range b.Devices {
			mode, medium, file := "rw", "-", d.File
			if d.ReadOnly {
				mode = "ro"
			}
			if d.Removable {
				switch {
				case d.TrayOpen:
					medium = "tray open"
				case d.MediumInserted:
					medium = "inserted"
				default:
					medium = "empty"
				}
			}
			if file == "" {
				file = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", d.Name, cmp.Or(d.Format, "-"), mode, medium, file)
		}
	}
}

// powerVerbs maps API verbs to command names in the CLI's kebab case.
var powerVerbs = map[api.PowerOp]string{
	api.PowerOn: "power-on", api.PowerOff: "power-off", api.ForcePowerOff: "force-power-off",
	api.Suspend: "suspend", api.Resume: "resume", api.Reset: "reset", api.Restart: "restart",
}

func vmPower(g *globals, op api.PowerOp) *cobra.Command {
	var (
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:               powerVerbs[op] + " VM",
		Short:             "Run " + string(op) + " on a VM",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: g.completeVMs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return do(g, func(ctx context.Context, c *agentclient.Client) (api.VM, error) {
				return c.Power(ctx, args[0], op, wait, timeout)
			}, vmRow)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "return once the VM got there, not when accepted")
	cmd.Flags().DurationVar(&timeout, "wait-timeout", 0, "how long the agent waits with --wait")
	return cmd
}

// completeFlag makes shell completion offer values for cmd's flag name.
// Cobra refuses only a flag cmd lacks or one given completions twice: a
// mistake in this package, which every NewRoot call would hit, so it
// panics rather than leave the flag silently without completions.
func completeFlag(cmd *cobra.Command, name string, values ...string) {
	err := cmd.RegisterFlagCompletionFunc(name, func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	})
	if err != nil {
		panic(err)
	}
}

func readFileOrStdin(name string) ([]byte, error) {
	if name == "-" {
		var raw json.RawMessage
		if err := json.NewDecoder(os.Stdin).Decode(&raw); err != nil {
			return nil, errdefs.Invalid("file", "stdin is not JSON: %v", err)
		}
		return raw, nil
	}
	return os.ReadFile(name)
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

package unattended

import (
	"errors"
	"fmt"
	"strings"
)

// KickstartError is a fault CheckKickstart found, with its 1-based line.
type KickstartError struct {
	Line int
	Msg  string
}

func (e *KickstartError) Error() string { return fmt.Sprintf("kickstart line %d: %s", e.Line, e.Msg) }

// kickstartCommands are the commands of current Fedora kickstart syntax.
var kickstartCommands = map[string]bool{
	"authselect": true, "autopart": true, "bootc": true, "bootloader": true, "btrfs": true, "cdrom": true,
	"clearpart": true, "cmdline": true, "driverdisk": true, "eula": true, "fcoe": true, "firewall": true,
	"firstboot": true, "graphical": true, "group": true, "halt": true, "harddrive": true, "hmc": true,
	"ignoredisk": true, "iscsi": true, "iscsiname": true, "keyboard": true, "lang": true, "liveimg": true,
	"logging": true, "logvol": true, "mediacheck": true, "module": true, "mount": true, "network": true,
	"nfs": true, "nvdimm": true, "ostreecontainer": true, "ostreesetup": true, "part": true, "partition": true,
	"poweroff": true, "raid": true, "realm": true, "reboot": true, "repo": true, "reqpart": true,
	"rescue": true, "rhsm": true, "rootpw": true, "selinux": true, "services": true, "shutdown": true,
	"skipx": true, "snapshot": true, "sshkey": true, "sshpw": true, "syspurpose": true, "text": true,
	"timesource": true, "timezone": true, "updates": true, "url": true, "user": true, "vnc": true,
	"volgroup": true, "xconfig": true, "zerombr": true, "zfcp": true, "zipl": true,
	"%include": true, "%ksappend": true,
}

// kickstartOptions are the options of the commands this package writes,
// with whether each takes a value. Other commands' options are not checked.
var kickstartOptions = map[string]map[string]bool{
	"text": {}, "zerombr": {}, "poweroff": {}, "reboot": {"--eject": false, "--kexec": false},
	"halt": {}, "shutdown": {}, "skipx": {}, "cmdline": {}, "graphical": {"--non-interactive": false},
	"lang":     {"--addsupport": true},
	"keyboard": {"--vckeymap": true, "--xlayouts": true, "--switch": true},
	"timezone": {"--utc": false, "--isUtc": false, "--nontp": false, "--ntpservers": true},
	"network": {"--bootproto": true, "--device": true, "--activate": false, "--no-activate": false,
		"--hostname": true, "--onboot": true, "--ip": true, "--netmask": true, "--gateway": true,
		"--nameserver": true, "--noipv4": false, "--noipv6": false, "--ipv6": true, "--mtu": true,
		"--nodefroute": false, "--nodns": false, "--interfacename": true},
	"rootpw": {"--iscrypted": false, "--plaintext": false, "--lock": false, "--allow-ssh": false},
	"user": {"--name": true, "--password": true, "--iscrypted": false, "--plaintext": false, "--groups": true,
		"--gecos": true, "--homedir": true, "--lock": false, "--shell": true, "--uid": true, "--gid": true},
	"clearpart": {"--all": false, "--initlabel": false, "--disklabel": true, "--drives": true, "--list": true,
		"--none": false, "--linux": false},
	"autopart": {"--type": true, "--fstype": true, "--nohome": false, "--noboot": false, "--noswap": false,
		"--encrypted": false, "--passphrase": true, "--luks-version": true},
	"bootloader": {"--location": true, "--timeout": true, "--append": true, "--boot-drive": true,
		"--password": true, "--iscrypted": false, "--leavebootorder": false, "--driveorder": true},
	"firstboot": {"--enable": false, "--disable": false, "--reconfig": false},
	"selinux":   {"--enforcing": false, "--permissive": false, "--disabled": false},
	"services":  {"--enabled": true, "--disabled": true},
}

// kickstartPositional says how many plain arguments a checked command takes.
var kickstartPositional = map[string][2]int{
	"lang": {1, 1}, "timezone": {0, 1}, "rootpw": {0, 1},
}

var kickstartSections = map[string]bool{
	"%packages": true, "%pre": true, "%pre-install": true, "%post": true, "%onerror": true,
	"%traceback": true, "%addon": true, "%anaconda": true,
}

// singleton commands may appear once; the groups hold commands that exclude each other.
var (
	ksSingletons = []string{"lang", "keyboard", "timezone", "rootpw", "bootloader", "autopart", "zerombr",
		"clearpart", "firstboot", "selinux", "network --hostname"}
	ksExclusive = [][]string{{"text", "graphical", "cmdline"}, {"poweroff", "reboot", "halt", "shutdown"},
		{"autopart", "part", "partition", "logvol", "raid", "volgroup", "btrfs"}}
)

// CheckKickstart checks a kickstart file the way Debian cannot (pykickstart's
// ksvalidator is not packaged): every command is known, the options of the
// common commands are known, sections are closed by %end and not nested,
// singletons appear once, and an unattended install's essentials are there:
// lang, keyboard, timezone, rootpw or user, partitioning, and %packages.
func CheckKickstart(ks []byte) error {
	seen := map[string]int{}
	var openSection string
	var openLine int
	sections := map[string]bool{}
	for i, line := range strings.Split(string(ks), "\n") {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if openSection != "" {
			first := strings.Fields(trimmed)
			if len(first) > 0 && first[0] == "%end" {
				openSection = ""
				continue
			}
			if len(first) > 0 && kickstartSections[first[0]] {
				return &KickstartError{n, fmt.Sprintf("%s opened before %s of line %d was closed by %%end", first[0], openSection, openLine)}
			}
			continue // section bodies are scripts or package lists
		}
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		toks, err := splitKickstart(trimmed)
		if err != nil {
			return &KickstartError{n, err.Error()}
		}
		if len(toks) == 0 {
			continue
		}
		cmd := toks[0]
		switch {
		case cmd == "%end":
			return &KickstartError{n, "%end without an open section"}
		case kickstartSections[cmd]:
			openSection, openLine = cmd, n
			sections[cmd] = true
			continue
		case !kickstartCommands[cmd]:
			return &KickstartError{n, fmt.Sprintf("unknown command %q", cmd)}
		}
		if err := checkKickstartArgs(cmd, toks[1:]); err != nil {
			return &KickstartError{n, err.Error()}
		}
		seen[cmd]++
		if cmd == "network" && hasOption(toks[1:], "--hostname") {
			seen["network --hostname"]++
		}
	}
	if openSection != "" {
		return &KickstartError{openLine, openSection + " is never closed by %end"}
	}
	for _, s := range ksSingletons {
		if seen[s] > 1 {
			return &KickstartError{0, fmt.Sprintf("%s given %d times", s, seen[s])}
		}
	}
	for _, group := range ksExclusive {
		var present []string
		for _, c := range group {
			if seen[c] > 0 {
				present = append(present, c)
			}
		}
		if len(present) > 1 && !(group[0] == "autopart" && seen["autopart"] == 0) {
			return &KickstartError{0, "conflicting commands: " + strings.Join(present, ", ")}
		}
	}
	for _, req := range []string{"lang", "keyboard", "timezone"} {
		if seen[req] == 0 {
			return &KickstartError{0, "required command " + req + " is missing"}
		}
	}
	if seen["rootpw"] == 0 && seen["user"] == 0 {
		return &KickstartError{0, "neither rootpw nor user: nobody could log in"}
	}
	if seen["autopart"]+seen["part"]+seen["partition"]+seen["logvol"]+seen["raid"]+seen["btrfs"]+seen["mount"] == 0 {
		return &KickstartError{0, "no partitioning command (autopart, part, ...)"}
	}
	if !sections["%packages"] {
		return &KickstartError{0, "required section %packages is missing"}
	}
	return nil
}

func hasOption(args []string, name string) bool {
	for _, a := range args {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func checkKickstartArgs(cmd string, args []string) error {
	opts, checked := kickstartOptions[cmd]
	if !checked {
		return nil
	}
	positional := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			positional++
			continue
		}
		name, _, hasValue := strings.Cut(a, "=")
		takesValue, known := opts[name]
		switch {
		case !known:
			return fmt.Errorf("%s: unknown option %s", cmd, name)
		case takesValue && !hasValue:
			if i+1 >= len(args) {
				return fmt.Errorf("%s: option %s needs a value", cmd, name)
			}
			i++
		case !takesValue && hasValue:
			return fmt.Errorf("%s: option %s takes no value", cmd, name)
		}
	}
	lim, ok := kickstartPositional[cmd]
	if !ok {
		lim = [2]int{0, 0}
	}
	if positional < lim[0] || positional > lim[1] {
		return fmt.Errorf("%s: takes %d to %d arguments, got %d", cmd, lim[0], lim[1], positional)
	}
	if cmd == "keyboard" && len(args) == 0 {
		return errors.New("keyboard: needs --vckeymap or --xlayouts")
	}
	if cmd == "user" && !hasOption(args, "--name") {
		return errors.New("user: --name is required")
	}
	return nil
}

// splitKickstart splits a line as kickstart's parser does (POSIX shlex):
// quotes group, backslash escapes, and # at the start of a word comments.
func splitKickstart(line string) ([]string, error) {
	var toks []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			if inWord {
				toks = append(toks, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return toks, nil
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) && strings.IndexByte("\\\"$`", line[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(line[i])
			}
			if i >= len(line) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\':
			if i+1 >= len(line) {
				return nil, errors.New("backslash at end of line")
			}
			i++
			cur.WriteByte(line[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		toks = append(toks, cur.String())
	}
	return toks, nil
}

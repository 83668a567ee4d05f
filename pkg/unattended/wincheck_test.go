package unattended

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// UnattendError is a fault CheckAutounattend found.
type UnattendError struct {
	Path string // element path, such as unattend/settings[oobeSystem]/component
	Msg  string
}

func (e *UnattendError) Error() string { return fmt.Sprintf("autounattend.xml: %s: %s", e.Path, e.Msg) }

var unattendPasses = map[string]bool{
	"windowsPE": true, "offlineServicing": true, "generalize": true, "specialize": true,
	"auditSystem": true, "auditUser": true, "oobeSystem": true,
}

// componentPasses lists the components this checker knows and the passes
// each is valid in.
var componentPasses = map[string][]string{
	"Microsoft-Windows-International-Core-WinPE":             {"windowsPE"},
	"Microsoft-Windows-International-Core":                   {"specialize", "oobeSystem", "auditSystem", "auditUser"},
	"Microsoft-Windows-Setup":                                {"windowsPE"},
	"Microsoft-Windows-PnpCustomizationsWinPE":               {"windowsPE"},
	"Microsoft-Windows-PnpCustomizationsNonWinPE":            {"offlineServicing", "auditSystem"},
	"Microsoft-Windows-Shell-Setup":                          {"offlineServicing", "generalize", "specialize", "auditSystem", "auditUser", "oobeSystem"},
	"Microsoft-Windows-Deployment":                           {"generalize", "specialize", "auditSystem", "auditUser", "oobeSystem"},
	"Microsoft-Windows-UnattendedJoin":                       {"specialize"},
	"Microsoft-Windows-TerminalServices-LocalSessionManager": {"offlineServicing", "specialize"},
	"Microsoft-Windows-Security-SPP-UX":                      {"specialize"},
	"Microsoft-Windows-TCPIP":                                {"windowsPE", "specialize"},
}

// settingPasses restricts settings of Microsoft-Windows-Shell-Setup that
// Setup honours only in some passes.
var settingPasses = map[string][]string{
	"ComputerName":       {"specialize"},
	"FirstLogonCommands": {"oobeSystem"},
	"OOBE":               {"oobeSystem"},
	"UserAccounts":       {"oobeSystem", "auditSystem"},
	"ProductKey":         {"specialize"},
}

// componentSettings lists the top-level settings of components whose
// schema this checker holds; settings of other known components pass.
var componentSettings = map[string][]string{
	"Microsoft-Windows-International-Core-WinPE": {"SetupUILanguage", "InputLocale", "SystemLocale", "UILanguage", "UILanguageFallback", "UserLocale", "LayeredDriver"},
	"Microsoft-Windows-International-Core":       {"InputLocale", "SystemLocale", "UILanguage", "UILanguageFallback", "UserLocale"},
	"Microsoft-Windows-Setup": {"DiskConfiguration", "ImageInstall", "UserData", "DynamicUpdate", "RunSynchronous",
		"RunAsynchronous", "Display", "ComplianceCheck", "EnableFirewall", "EnableNetwork", "LogPath", "Restart",
		"UseConfigurationSet", "WindowsDeploymentServices", "Diagnostics"},
	"Microsoft-Windows-PnpCustomizationsWinPE": {"DriverPaths"},
	"Microsoft-Windows-Shell-Setup": {"AutoLogon", "ComputerName", "FirstLogonCommands", "LogonCommands", "OOBE",
		"UserAccounts", "TimeZone", "ProductKey", "RegisteredOrganization", "RegisteredOwner", "CopyProfile",
		"DisableAutoDaylightTimeSet", "ShowWindowsLive", "Display", "Themes", "VisualEffects", "WindowsFeatures",
		"OEMInformation", "BluetoothTaskbarIconEnabled", "DoNotCleanTaskBar", "TaskbarLinks", "StartPanelLinks"},
}

// listItems must carry wcm:action, as Setup's list semantics require.
var listItems = map[string]bool{
	"PathAndCredentials": true, "Disk": true, "CreatePartition": true, "ModifyPartition": true,
	"SynchronousCommand": true, "RunSynchronousCommand": true, "LocalAccount": true, "MetaData": true,
}

type xnode struct {
	name     xml.Name
	attrs    []xml.Attr
	children []*xnode
	text     string
}

func (n *xnode) attr(space, local string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Local == local && a.Name.Space == space {
			return a.Value, true
		}
	}
	return "", false
}

func (n *xnode) child(local string) *xnode {
	for _, c := range n.children {
		if c.name.Local == local {
			return c
		}
	}
	return nil
}

func parseXMLTree(data []byte) (*xnode, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	var stack []*xnode
	var root *xnode
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			n := &xnode{name: t.Name, attrs: t.Attr}
			if len(stack) > 0 {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			} else if root != nil {
				return nil, errors.New("more than one root element")
			} else {
				root = n
			}
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text += string(t)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("text outside the root element")
			}
		}
	}
	if root == nil {
		return nil, errors.New("no root element")
	}
	return root, nil
}

// CheckAutounattend checks that data is well-formed XML with the structure
// of an unattend answer file: the unattend root in Microsoft's namespace,
// settings with known pass names each at most once, known components valid
// in their pass with the amd64/neutral attributes Setup matches on, known
// settings, wcm:action on list items, and FirstLogonCommands ordered 1..n.
func CheckAutounattend(data []byte) error {
	root, err := parseXMLTree(data)
	if err != nil {
		return &UnattendError{"", "not well-formed XML: " + err.Error()}
	}
	if root.name.Local != "unattend" || root.name.Space != unattendNS {
		return &UnattendError{root.name.Local, fmt.Sprintf("root must be unattend in namespace %s, got {%s}%s", unattendNS, root.name.Space, root.name.Local)}
	}
	passes := map[string]bool{}
	for _, s := range root.children {
		if s.name.Local != "settings" || s.name.Space != unattendNS {
			return &UnattendError{"unattend/" + s.name.Local, "only settings elements belong under unattend"}
		}
		pass, _ := s.attr("", "pass")
		path := "unattend/settings[" + pass + "]"
		if !unattendPasses[pass] {
			return &UnattendError{path, fmt.Sprintf("unknown pass %q", pass)}
		}
		if passes[pass] {
			return &UnattendError{path, "pass given twice"}
		}
		passes[pass] = true
		for _, c := range s.children {
			if err := checkComponent(c, pass, path); err != nil {
				return err
			}
		}
	}
	if len(passes) == 0 {
		return &UnattendError{"unattend", "no settings"}
	}
	return nil
}

func checkComponent(c *xnode, pass, parent string) error {
	name, _ := c.attr("", "name")
	path := parent + "/component[" + name + "]"
	if c.name.Local != "component" {
		return &UnattendError{parent + "/" + c.name.Local, "only component elements belong under settings"}
	}
	valid, known := componentPasses[name]
	if !known {
		return &UnattendError{path, "unknown component"}
	}
	if !contains(valid, pass) {
		return &UnattendError{path, fmt.Sprintf("not valid in pass %s (only %s)", pass, strings.Join(valid, ", "))}
	}
	for attr, want := range map[string][]string{
		"processorArchitecture": {"amd64", "x86", "arm64"}, "publicKeyToken": {"31bf3856ad364e35"},
		"language": {"neutral"}, "versionScope": {"nonSxS"},
	} {
		if v, _ := c.attr("", attr); !contains(want, v) {
			return &UnattendError{path, fmt.Sprintf("%s=%q, want one of %s", attr, v, strings.Join(want, ", "))}
		}
	}
	allowed := componentSettings[name]
	for _, s := range c.children {
		if allowed != nil && !contains(allowed, s.name.Local) {
			return &UnattendError{path + "/" + s.name.Local, "unknown setting for this component"}
		}
		if only, ok := settingPasses[s.name.Local]; ok && name == "Microsoft-Windows-Shell-Setup" && !contains(only, pass) {
			return &UnattendError{path + "/" + s.name.Local, fmt.Sprintf("Setup ignores it in pass %s", pass)}
		}
		if err := checkListItems(s, path+"/"+s.name.Local); err != nil {
			return err
		}
		if s.name.Local == "FirstLogonCommands" {
			if err := checkOrder(s, path+"/FirstLogonCommands"); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkListItems(n *xnode, path string) error {
	for _, c := range n.children {
		p := path + "/" + c.name.Local
		if listItems[c.name.Local] {
			if _, ok := c.attr(wcmNS, "action"); !ok {
				return &UnattendError{p, "list item without wcm:action"}
			}
		}
		if err := checkListItems(c, p); err != nil {
			return err
		}
	}
	return nil
}

func checkOrder(n *xnode, path string) error {
	for i, c := range n.children {
		o := c.child("Order")
		if c.name.Local != "SynchronousCommand" || o == nil {
			return &UnattendError{path, "every entry must be a SynchronousCommand with an Order"}
		}
		if v, err := strconv.Atoi(strings.TrimSpace(o.text)); err != nil || v != i+1 {
			return &UnattendError{path, fmt.Sprintf("command %d has Order %q, want %d", i+1, o.text, i+1)}
		}
		if cl := c.child("CommandLine"); cl == nil || strings.TrimSpace(cl.text) == "" {
			return &UnattendError{path, fmt.Sprintf("command %d has no CommandLine", i+1)}
		} else if n := len([]rune(cl.text)); n > 1024 {
			return &UnattendError{path, fmt.Sprintf("command %d: CommandLine of %d characters, Setup takes 1024", i+1, n)}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

package firewall

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// valueKind says how to print the bytes a field holds.
type valueKind int

const (
	kindHex valueKind = iota
	kindIfname
	kindMAC
	kindEtherType
	kindL4Proto
	kindIPv4
	kindPort
	kindTCPFlags
	kindICMPType
	kindCtState
)

// field is what a register holds after a load.
type field struct {
	name string
	kind valueKind
}

// ruleText turns one rule's expressions back into a line close to nft
// syntax. It understands the expressions this package writes and prints
// anything else in a raw form, so that a difference always shows.
type ruleText struct {
	parts []string
	cur   *field
	mask  []byte
	l3    string // "ip" or "arp" once the ethertype is known
	l4    string // "tcp", "udp" or "icmp" once the protocol is known
}

// RuleText renders a rule, as written or as read back from the kernel, in
// the package's stable textual form.
func RuleText(r *nftables.Rule) string {
	t := &ruleText{}
	for _, e := range r.Exprs {
		t.expr(e)
	}
	if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
		t.parts = append(t.parts, "comment "+quote(c))
	}
	return strings.Join(t.parts, " ")
}

func quote(s string) string { return strconv.Quote(s) }

func (t *ruleText) emit(s string) { t.parts = append(t.parts, s) }

func (t *ruleText) set(f field) { t.cur, t.mask = &f, nil }

func (t *ruleText) expr(e expr.Any) {
	switch e := e.(type) {
	case *expr.Meta:
		t.set(metaField(e.Key))
	case *expr.Payload:
		t.set(t.payloadField(e))
	case *expr.Ct:
		if e.Key == expr.CtKeySTATE {
			t.set(field{"ct state", kindCtState})
		} else {
			t.set(field{fmt.Sprintf("ct key%d", e.Key), kindHex})
		}
	case *expr.Bitwise:
		t.mask = e.Mask
	case *expr.Cmp:
		t.cmp(e)
	case *expr.Range:
		f := t.field()
		op := ""
		if e.Op != expr.CmpOpEq {
			op = cmpOpText(e.Op) + " "
		}
		t.emit(fmt.Sprintf("%s %s%s-%s", f.name, op, formatValue(f.kind, e.FromData), formatValue(f.kind, e.ToData)))
	case *expr.Lookup:
		f := t.field()
		switch {
		case e.IsDestRegSet:
			t.emit(fmt.Sprintf("%s vmap @%s", f.name, e.SetName))
		case e.Invert:
			t.emit(fmt.Sprintf("%s != @%s", f.name, e.SetName))
		default:
			t.emit(fmt.Sprintf("%s @%s", f.name, e.SetName))
		}
	case *expr.Counter:
		t.emit("counter")
	case *expr.Objref:
		if e.Type == unix.NFT_OBJECT_COUNTER {
			t.emit("counter name " + quote(e.Name))
		} else {
			t.emit(fmt.Sprintf("objref type %d name %s", e.Type, quote(e.Name)))
		}
	case *expr.Verdict:
		t.emit(verdictText(e))
	case *expr.Reject:
		t.emit(rejectText(e))
	default:
		t.emit(fmt.Sprintf("[%T %+v]", e, e))
	}
}

// field is the loaded field; a compare with nothing loaded shows as such.
func (t *ruleText) field() field {
	if t.cur == nil {
		return field{"[no load]", kindHex}
	}
	return *t.cur
}

func (t *ruleText) cmp(e *expr.Cmp) {
	f := t.field()
	op := cmpOpText(e.Op)
	if t.mask != nil {
		if bits, ok := prefixBits(t.mask); ok && f.kind == kindIPv4 && e.Op == expr.CmpOpEq {
			t.emit(fmt.Sprintf("%s %s/%d", f.name, formatValue(f.kind, e.Data), bits))
		} else {
			t.emit(fmt.Sprintf("%s & (%s) %s %s", f.name, formatValue(f.kind, t.mask), op, formatValue(f.kind, e.Data)))
		}
		return
	}
	if e.Op == expr.CmpOpEq {
		t.emit(fmt.Sprintf("%s %s", f.name, formatValue(f.kind, e.Data)))
		t.learn(f, e.Data)
		return
	}
	t.emit(fmt.Sprintf("%s %s %s", f.name, op, formatValue(f.kind, e.Data)))
}

// learn keeps the protocol context an equality establishes, so that later
// header fields get their names.
func (t *ruleText) learn(f field, data []byte) {
	switch f.kind {
	case kindEtherType:
		switch binary.BigEndian.Uint16(pad(data, 2)) {
		case etherIPv4:
			t.l3 = "ip"
		case etherARP:
			t.l3 = "arp"
		}
	case kindL4Proto:
		if len(data) != 1 {
			return
		}
		switch data[0] {
		case protoTCP:
			t.l4 = "tcp"
		case protoUDP:
			t.l4 = "udp"
		case protoICMP:
			t.l4 = "icmp"
		}
	}
}

func metaField(k expr.MetaKey) field {
	switch k {
	case expr.MetaKeyIIFNAME:
		return field{"iifname", kindIfname}
	case expr.MetaKeyOIFNAME:
		return field{"oifname", kindIfname}
	case expr.MetaKeyPROTOCOL:
		return field{"meta protocol", kindEtherType}
	case expr.MetaKeyL4PROTO:
		return field{"meta l4proto", kindL4Proto}
	case expr.MetaKeyBRIIIFNAME:
		return field{"meta ibrname", kindIfname}
	}
	return field{fmt.Sprintf("meta key%d", k), kindHex}
}

func (t *ruleText) payloadField(p *expr.Payload) field {
	type at struct {
		base      expr.PayloadBase
		off, size uint32
	}
	k := at{p.Base, p.Offset, p.Len}
	switch k {
	case at{expr.PayloadBaseLLHeader, 0, 6}:
		return field{"ether daddr", kindMAC}
	case at{expr.PayloadBaseLLHeader, 6, 6}:
		return field{"ether saddr", kindMAC}
	case at{expr.PayloadBaseLLHeader, 12, 2}:
		return field{"ether type", kindEtherType}
	}
	if t.l3 == "arp" {
		switch k {
		case at{expr.PayloadBaseNetworkHeader, 8, 6}:
			return field{"arp saddr ether", kindMAC}
		case at{expr.PayloadBaseNetworkHeader, 14, 4}:
			return field{"arp saddr ip", kindIPv4}
		case at{expr.PayloadBaseNetworkHeader, 18, 6}:
			return field{"arp daddr ether", kindMAC}
		case at{expr.PayloadBaseNetworkHeader, 24, 4}:
			return field{"arp daddr ip", kindIPv4}
		}
	}
	if t.l3 == "ip" {
		switch k {
		case at{expr.PayloadBaseNetworkHeader, 12, 4}:
			return field{"ip saddr", kindIPv4}
		case at{expr.PayloadBaseNetworkHeader, 16, 4}:
			return field{"ip daddr", kindIPv4}
		}
	}
	l4 := t.l4
	if l4 == "" || l4 == "icmp" {
		l4 = "th"
	}
	switch k {
	case at{expr.PayloadBaseTransportHeader, 0, 2}:
		return field{l4 + " sport", kindPort}
	case at{expr.PayloadBaseTransportHeader, 2, 2}:
		return field{l4 + " dport", kindPort}
	}
	if t.l4 == "tcp" && k == (at{expr.PayloadBaseTransportHeader, 13, 1}) {
		return field{"tcp flags", kindTCPFlags}
	}
	if t.l4 == "icmp" && k == (at{expr.PayloadBaseTransportHeader, 0, 1}) {
		return field{"icmp type", kindICMPType}
	}
	base := map[expr.PayloadBase]string{expr.PayloadBaseLLHeader: "ll", expr.PayloadBaseNetworkHeader: "nh",
		expr.PayloadBaseTransportHeader: "th"}[p.Base]
	return field{fmt.Sprintf("@%s,%d,%d", base, p.Offset*8, p.Len*8), kindHex}
}

func cmpOpText(op expr.CmpOp) string {
	switch op {
	case expr.CmpOpEq:
		return "=="
	case expr.CmpOpNeq:
		return "!="
	case expr.CmpOpLt:
		return "<"
	case expr.CmpOpLte:
		return "<="
	case expr.CmpOpGt:
		return ">"
	case expr.CmpOpGte:
		return ">="
	}
	return fmt.Sprintf("op%d", op)
}

func verdictText(v *expr.Verdict) string {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept"
	case expr.VerdictDrop:
		return "drop"
	case expr.VerdictReturn:
		return "return"
	case expr.VerdictJump:
		return "jump " + v.Chain
	case expr.VerdictGoto:
		return "goto " + v.Chain
	case expr.VerdictContinue:
		return "continue"
	}
	return fmt.Sprintf("verdict%d", v.Kind)
}

func rejectText(r *expr.Reject) string {
	switch {
	case r.Type == unix.NFT_REJECT_TCP_RST:
		return "reject with tcp reset"
	case r.Type == unix.NFT_REJECT_ICMPX_UNREACH && r.Code == unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED:
		return "reject with icmpx admin-prohibited"
	}
	return fmt.Sprintf("reject type %d code %d", r.Type, r.Code)
}

func prefixBits(m []byte) (int, bool) {
	if len(m) != 4 {
		return 0, false
	}
	ones, bits := net.IPMask(m).Size()
	return ones, bits == 32
}

func pad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}

var (
	etherNames = map[uint16]string{etherIPv4: "ip", etherARP: "arp", 0x86dd: "ip6", 0x8100: "vlan"}
	protoNames = map[byte]string{protoICMP: "icmp", protoTCP: "tcp", protoUDP: "udp", 58: "icmpv6"}
	icmpNames  = map[byte]string{0: "echo-reply", 3: "destination-unreachable", 4: "source-quench", 5: "redirect",
		8: "echo-request", 11: "time-exceeded", 12: "parameter-problem", 13: "timestamp-request",
		14: "timestamp-reply", 15: "info-request", 16: "info-reply", 17: "address-mask-request", 18: "address-mask-reply"}
	tcpFlagNames = []struct {
		bit  byte
		name string
	}{{tcpFIN, "fin"}, {tcpSYN, "syn"}, {tcpRST, "rst"}, {tcpPSH, "psh"}, {tcpACK, "ack"}, {tcpURG, "urg"}, {tcpECE, "ecn"}, {tcpCWR, "cwr"}}
	ctStateNames = []struct {
		bit  uint32
		name string
	}{{ctInvalid, "invalid"}, {ctEstablished, "established"}, {ctRelated, "related"}, {ctNew, "new"}}
)

func kindOfSetKey(t nftables.SetDatatype) valueKind {
	switch t.Name {
	case nftables.TypeIFName.Name:
		return kindIfname
	case nftables.TypeIPAddr.Name:
		return kindIPv4
	case nftables.TypeICMPType.Name:
		return kindICMPType
	}
	return kindHex
}

// formatValue prints the bytes of a field of the given kind.
func formatValue(k valueKind, b []byte) string {
	switch k {
	case kindIfname:
		return quote(strings.TrimRight(string(b), "\x00"))
	case kindMAC:
		if len(b) == 6 {
			return net.HardwareAddr(b).String()
		}
	case kindEtherType:
		if len(b) == 2 {
			v := binary.BigEndian.Uint16(b)
			if n, ok := etherNames[v]; ok {
				return n
			}
			return fmt.Sprintf("0x%04x", v)
		}
	case kindL4Proto:
		if len(b) == 1 {
			if n, ok := protoNames[b[0]]; ok {
				return n
			}
			return strconv.Itoa(int(b[0]))
		}
	case kindIPv4:
		if a, ok := netip.AddrFromSlice(b); ok && a.Is4() {
			return a.String()
		}
	case kindPort:
		if len(b) == 2 {
			return strconv.Itoa(int(binary.BigEndian.Uint16(b)))
		}
	case kindICMPType:
		if len(b) == 1 {
			if n, ok := icmpNames[b[0]]; ok {
				return n
			}
			return strconv.Itoa(int(b[0]))
		}
	case kindTCPFlags:
		if len(b) == 1 {
			var names []string
			for _, f := range tcpFlagNames {
				if b[0]&f.bit != 0 {
					names = append(names, f.name)
				}
			}
			if len(names) == 0 {
				return "0"
			}
			return strings.Join(names, "|")
		}
	case kindCtState:
		if len(b) == 4 {
			v := binary.NativeEndian.Uint32(b)
			var names []string
			for _, s := range ctStateNames {
				if v&s.bit != 0 {
					names = append(names, s.name)
				}
			}
			if len(names) == 0 {
				return "0"
			}
			return strings.Join(names, "|")
		}
	}
	return "0x" + fmt.Sprintf("%x", b)
}

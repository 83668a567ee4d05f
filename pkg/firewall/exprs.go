package firewall

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Every match loads into register 1 and compares from there.
const reg = unix.NFT_REG_1

// Ethertypes, IP protocols, TCP flags and conntrack state bits we match.
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806

	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
	tcpECE = 0x40
	tcpCWR = 0x80
)

// ICMP types of each stateless class.
var (
	icmpRequestTypes = []byte{8, 13, 15, 17}   // echo, timestamp, info, address-mask requests
	icmpReplyTypes   = []byte{0, 14, 16, 18}   // their replies
	icmpErrorTypes   = []byte{3, 4, 5, 11, 12} // unreachable, source-quench, redirect, time-exceeded, parameter-problem
)

func be16(v int) []byte {
	b := make([]byte, 2)
	binary.BigEndian.PutUint16(b, uint16(v))
	return b
}

// ifnameKey is an interface name as the kernel keys it: padded to IFNAMSIZ.
func ifnameKey(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// ifnameOfKey is the interface name of a key ifnameKey made.
func ifnameOfKey(b []byte) string { return strings.TrimRight(string(b), "\x00") }

func load(base expr.PayloadBase, off, n uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: base, Offset: off, Len: n}
}

func meta(k expr.MetaKey) expr.Any { return &expr.Meta{Key: k, Register: reg} }

func cmp(op expr.CmpOp, data []byte) expr.Any { return &expr.Cmp{Op: op, Register: reg, Data: data} }

func mask(m []byte) expr.Any {
	return &expr.Bitwise{SourceRegister: reg, DestRegister: reg, Len: uint32(len(m)), Mask: m, Xor: make([]byte, len(m))}
}

// matchEtherType: "meta protocol <t>", the frame's ethertype after any VLAN tag.
func matchEtherType(t int) []expr.Any {
	return []expr.Any{meta(expr.MetaKeyPROTOCOL), cmp(expr.CmpOpEq, be16(t))}
}

func matchL4(proto byte) []expr.Any {
	return []expr.Any{meta(expr.MetaKeyL4PROTO), cmp(expr.CmpOpEq, []byte{proto})}
}

// matchPrefix matches an IPv4 header address (offset 12 source, 16
// destination) against a prefix; /0 matches anything and adds nothing.
func matchPrefix(off uint32, p netip.Prefix) []expr.Any {
	if !p.IsValid() || p.Bits() == 0 {
		return nil
	}
	a := p.Addr().As4()
	out := []expr.Any{load(expr.PayloadBaseNetworkHeader, off, 4)}
	if p.Bits() < 32 {
		out = append(out, mask(net.CIDRMask(p.Bits(), 32)))
	}
	return append(out, cmp(expr.CmpOpEq, a[:]))
}

// matchPorts matches a transport port (offset 0 source, 2 destination).
func matchPorts(off uint32, r PortRange) []expr.Any {
	if r.IsAny() {
		return nil
	}
	out := []expr.Any{load(expr.PayloadBaseTransportHeader, off, 2)}
	if r.Start == r.End {
		return append(out, cmp(expr.CmpOpEq, be16(r.Start)))
	}
	return append(out, &expr.Range{Op: expr.CmpOpEq, Register: reg, FromData: be16(r.Start), ToData: be16(r.End)})
}

// matchTCPClasses matches the union of TCP header classes with one mask
// over SYN, ACK and RST.
func matchTCPClasses(cs []stateClass) []expr.Any {
	var n, e, i bool
	for _, c := range cs {
		n = n || c == tcpNew
		e = e || c == tcpEstablished
		i = i || c == tcpInvalid
	}
	flags := func(m byte, op expr.CmpOp, v byte) []expr.Any {
		return []expr.Any{load(expr.PayloadBaseTransportHeader, 13, 1), mask([]byte{m}), cmp(op, []byte{v})}
	}
	const sar = tcpSYN | tcpACK | tcpRST
	switch {
	case n && e && i:
		return nil
	case n && e:
		return flags(sar, expr.CmpOpNeq, 0)
	case n && i:
		return flags(tcpACK|tcpRST, expr.CmpOpEq, 0)
	case e && i:
		return flags(sar, expr.CmpOpNeq, tcpSYN)
	case n:
		return flags(sar, expr.CmpOpEq, tcpSYN)
	case e:
		return flags(tcpACK|tcpRST, expr.CmpOpNeq, 0)
	default:
		return flags(sar, expr.CmpOpEq, 0)
	}
}

// icmpClassSet is the name of the set holding an ICMP class's types.
func icmpClassSet(c stateClass) string {
	switch c {
	case icmpRequest:
		return setICMPRequest
	case icmpReply:
		return setICMPReply
	default:
		return setICMPError
	}
}

func matchICMPClass(c stateClass) []expr.Any {
	return []expr.Any{load(expr.PayloadBaseTransportHeader, 0, 1), &expr.Lookup{SourceRegister: reg, SetName: icmpClassSet(c)}}
}

// Conntrack state bits, as the ct expression loads them.
const (
	ctInvalid     = 1
	ctEstablished = 2
	ctRelated     = 4
	ctNew         = 8
)

func matchCtState(cs *ConnectionState) []expr.Any {
	var bits uint32
	if cs.Invalid {
		bits |= ctInvalid
	}
	if cs.Established {
		bits |= ctEstablished
	}
	if cs.Related {
		bits |= ctRelated
	}
	if cs.New {
		bits |= ctNew
	}
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: reg},
		mask(binary.NativeEndian.AppendUint32(nil, bits)),
		cmp(expr.CmpOpNeq, make([]byte, 4)),
	}
}

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

func jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

func namedCounter(name string) expr.Any {
	return &expr.Objref{Type: int(unix.NFT_OBJECT_COUNTER), Name: name}
}

// actionExprs ends a rule: a counter, then the verdict.
func actionExprs(a Action, p Protocol) []expr.Any {
	out := []expr.Any{&expr.Counter{}}
	switch a {
	case Accept:
		return append(out, verdict(expr.VerdictAccept))
	case Drop:
		return append(out, verdict(expr.VerdictDrop))
	}
	if p == TCP {
		return append(out, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	}
	return append(out, &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED})
}

// entryMatches returns the matches of an entry; several alternatives mean
// the entry is their union and becomes one kernel rule each.
func entryMatches(e Entry, m Mode) [][]expr.Any {
	r := e.Rule
	src, dst := r.SrcPrefix(), r.DstPrefix()
	sport, dport := r.SrcPorts(), r.DstPorts()
	if e.Reply {
		src, dst, sport, dport = dst, src, dport, sport
	}
	var common []expr.Any
	if src.IsValid() || dst.IsValid() {
		common = append(common, matchEtherType(etherIPv4)...)
		common = append(common, matchPrefix(12, src)...)
		common = append(common, matchPrefix(16, dst)...)
	}
	withProto := func(p Protocol, tail ...expr.Any) []expr.Any {
		out := append([]expr.Any{}, common...)
		switch p {
		case TCP:
			out = append(out, matchL4(protoTCP)...)
		case UDP:
			out = append(out, matchL4(protoUDP)...)
		case ICMP:
			out = append(out, matchL4(protoICMP)...)
		}
		out = append(out, matchPorts(0, sport)...)
		out = append(out, matchPorts(2, dport)...)
		return append(out, tail...)
	}
	if e.Reply {
		// Replies: established TCP, any UDP, the reply types of ICMP.
		tcp := withProto(TCP, matchTCPClasses([]stateClass{tcpEstablished})...)
		udp := withProto(UDP)
		icmp := withProto(ICMP, matchICMPClass(icmpReply)...)
		switch r.Protocol {
		case TCP:
			return [][]expr.Any{tcp}
		case UDP:
			return [][]expr.Any{udp}
		case ICMP:
			return [][]expr.Any{icmp}
		default:
			return [][]expr.Any{tcp, udp, icmp}
		}
	}
	if !r.ConnectionState.Any() {
		return [][]expr.Any{withProto(r.Protocol)}
	}
	if !m.Stateless {
		return [][]expr.Any{withProto(r.Protocol, matchCtState(r.ConnectionState)...)}
	}
	classes := stateClasses(r.Protocol, r.ConnectionState)
	if r.Protocol == TCP {
		return [][]expr.Any{withProto(TCP, matchTCPClasses(classes)...)}
	}
	var alts [][]expr.Any
	for _, c := range classes {
		alts = append(alts, withProto(ICMP, matchICMPClass(c)...))
	}
	return alts
}

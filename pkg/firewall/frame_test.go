package firewall

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// tcpSegment describes a hand-made TCP segment in an Ethernet frame.
type tcpSegment struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	sport, dport   uint16
	flags          byte
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// frame builds the Ethernet frame with valid IPv4 and TCP checksums.
func (s tcpSegment) frame() []byte {
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], s.sport)
	binary.BigEndian.PutUint16(tcp[2:], s.dport)
	binary.BigEndian.PutUint32(tcp[4:], 1000)
	if s.flags&tcpACK != 0 {
		binary.BigEndian.PutUint32(tcp[8:], 2000)
	}
	tcp[12] = 5 << 4
	tcp[13] = s.flags
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	src, dst := s.src.As4(), s.dst.As4()
	pseudo := append(append(append([]byte{}, src[:]...), dst[:]...), 0, protoTCP, 0, byte(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], checksum(append(pseudo, tcp...)))

	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(tcp)))
	ip[8] = 64
	ip[9] = protoTCP
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))

	eth := make([]byte, 14)
	copy(eth[0:], s.dstMAC)
	copy(eth[6:], s.srcMAC)
	binary.BigEndian.PutUint16(eth[12:], etherIPv4)
	return append(append(eth, ip...), tcp...)
}

// matches reports whether frame carries this segment (addresses, ports and
// flags).
func (s tcpSegment) matches(frame []byte) bool {
	if len(frame) < 54 || binary.BigEndian.Uint16(frame[12:]) != etherIPv4 || frame[23] != protoTCP {
		return false
	}
	ip := frame[14:]
	hl := int(ip[0]&0x0f) * 4
	src, dst := s.src.As4(), s.dst.As4()
	if string(ip[12:16]) != string(src[:]) || string(ip[16:20]) != string(dst[:]) || len(ip) < hl+14 {
		return false
	}
	tcp := ip[hl:]
	return binary.BigEndian.Uint16(tcp[0:]) == s.sport && binary.BigEndian.Uint16(tcp[2:]) == s.dport && tcp[13] == s.flags
}

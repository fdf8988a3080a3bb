// The Internet checksum (RFC 1071) of the native code, and TCPv4 segmentation for the sealing
// path: the header of segment k of a super-packet (what the kernel's software GSO and
// operators/core/wire/gso.ts segmentSuper produce, byte for byte). The TUN binding completes
// checksums with the same sum. Stateless and inline; no N-API.
#ifndef LWT_NATIVE_TCPSEG_H_
#define LWT_NATIVE_TCPSEG_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace lwt {

// The largest IPv4 + TCP header (60 + 60 bytes).
constexpr size_t kMaxTcpHeaders = 120;

// The one's-complement sum (RFC 1071) of `len` bytes, folded to 16 bits, in network byte order
// semantics. Sums native 32-bit words (the sum does not depend on byte order: RFC 1071 2(B)) and
// swaps once at the end on a little-endian host.
inline uint16_t InternetSum(const uint8_t* p, size_t len) {
  uint64_t sum = 0;
  while (len >= 8) {
    uint32_t a, b;
    memcpy(&a, p, 4);
    memcpy(&b, p + 4, 4);
    sum += a;
    sum += b;
    p += 8;
    len -= 8;
  }
  if (len >= 4) {
    uint32_t a;
    memcpy(&a, p, 4);
    sum += a;
    p += 4;
    len -= 4;
  }
  if (len >= 2) {
    uint16_t a;
    memcpy(&a, p, 2);
    sum += a;
    p += 2;
    len -= 2;
  }
  if (len == 1) {
    uint8_t last[2] = {p[0], 0};
    uint16_t a;
    memcpy(&a, last, 2);
    sum += a;
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  uint16_t folded = static_cast<uint16_t>(sum);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  folded = static_cast<uint16_t>((folded >> 8) | (folded << 8));
#endif
  return folded;
}

// Adds two folded 16-bit one's-complement sums.
inline uint16_t AddSums(uint16_t a, uint16_t b) {
  uint32_t s = static_cast<uint32_t>(a) + b;
  return static_cast<uint16_t>((s & 0xffff) + (s >> 16));
}

// The layout of a TCPv4 super-packet: IPv4 header bytes, IPv4 + TCP header bytes, and the payload
// bytes per segment for segments of at most `maxPacket` bytes; ok is false when `p` is not a TCPv4
// packet (or is truncated) or maxPacket leaves no room for payload.
struct SuperLayout {
  bool ok = false;
  size_t ihl = 0;
  size_t hdr = 0;
  size_t mss = 0;
  size_t payload = 0;
  // How many segments (at least 1).
  uint32_t segments = 0;
};

inline SuperLayout LayoutOf(const uint8_t* p, size_t len, uint32_t gsoSize, uint32_t maxPacket) {
  SuperLayout l;
  if (len < 40 || (p[0] >> 4) != 4 || p[9] != 6) return l;
  const size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
  if (ihl < 20 || len < ihl + 20) return l;
  const size_t hdr = ihl + static_cast<size_t>(p[ihl + 12] >> 4) * 4;
  if (hdr > len || hdr < ihl + 20 || gsoSize == 0 || maxPacket <= hdr) return l;
  l.mss = gsoSize < maxPacket - hdr ? gsoSize : maxPacket - hdr;
  l.ihl = ihl;
  l.hdr = hdr;
  l.payload = len - hdr;
  l.segments = l.payload == 0 ? 1 : static_cast<uint32_t>((l.payload + l.mss - 1) / l.mss);
  l.ok = true;
  return l;
}

inline void Put16Be(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// Writes into `h` (l.hdr bytes) the headers of segment k of super-packet `p`, whose payload is the
// `len` bytes at `chunk`: IP total length, id + k, IP checksum, sequence number + k * mss, FIN and
// PSH only on the last segment, CWR only on the first, and the complete TCP checksum.
inline void SegmentHeader(const uint8_t* p, const SuperLayout& l, uint32_t k, const uint8_t* chunk, size_t len,
                          uint8_t* h) {
  memcpy(h, p, l.hdr);
  const size_t ihl = l.ihl;
  const size_t total = l.hdr + len;
  Put16Be(h + 2, static_cast<uint16_t>(total));
  const uint16_t id0 = static_cast<uint16_t>((p[4] << 8) | p[5]);
  Put16Be(h + 4, static_cast<uint16_t>(id0 + k));
  const uint32_t seq0 = (static_cast<uint32_t>(p[ihl + 4]) << 24) | (static_cast<uint32_t>(p[ihl + 5]) << 16) |
                        (static_cast<uint32_t>(p[ihl + 6]) << 8) | p[ihl + 7];
  const uint32_t seq = seq0 + static_cast<uint32_t>(k * l.mss);
  h[ihl + 4] = static_cast<uint8_t>(seq >> 24);
  h[ihl + 5] = static_cast<uint8_t>(seq >> 16);
  h[ihl + 6] = static_cast<uint8_t>(seq >> 8);
  h[ihl + 7] = static_cast<uint8_t>(seq);
  uint8_t f = p[ihl + 13];
  if (k + 1 < l.segments) f &= static_cast<uint8_t>(~0x09);  // FIN, PSH: only the last segment
  if (k > 0) f &= static_cast<uint8_t>(~0x80);               // CWR: only the first
  h[ihl + 13] = f;
  h[10] = 0;
  h[11] = 0;
  Put16Be(h + 10, static_cast<uint16_t>(~InternetSum(h, ihl)));
  h[ihl + 16] = 0;
  h[ihl + 17] = 0;
  // Pseudo-header: addresses, protocol 6, TCP length.
  uint8_t pseudo[4];
  Put16Be(pseudo, 6);
  Put16Be(pseudo + 2, static_cast<uint16_t>(total - ihl));
  uint16_t sum = AddSums(InternetSum(h + 12, 8), InternetSum(pseudo, 4));
  sum = AddSums(sum, InternetSum(h + ihl, l.hdr - ihl));
  sum = AddSums(sum, InternetSum(chunk, len));
  Put16Be(h + ihl + 16, static_cast<uint16_t>(~sum));
}

}  // namespace lwt

#endif  // LWT_NATIVE_TCPSEG_H_

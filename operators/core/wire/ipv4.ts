// Reading the few IPv4 header fields the data path needs, straight from the bytes.

/** True when `p` looks like an IPv4 packet: version nibble 4 and at least a 20-byte header. */
export function isIpv4(p: Uint8Array): boolean {
  return p.length >= 20 && p[0]! >> 4 === 4;
}

/**
 * Why `p` cannot be forwarded as an IPv4 packet, or undefined when it can: `not-ipv4` (another
 * version, or shorter than a header), `malformed-ipv4` (its header length is below 20 or past its
 * total length, or its total length is past its bytes). Trailing bytes beyond the total length are
 * allowed (the receiving kernel trims them, as it does for Ethernet padding). Reads four bytes.
 */
export function ipv4Problem(p: Uint8Array): 'not-ipv4' | 'malformed-ipv4' | undefined {
  if (p.length < 20 || p[0]! >> 4 !== 4) return 'not-ipv4';
  const ihl = (p[0]! & 0x0f) << 2;
  const total = (p[2]! << 8) | p[3]!;
  return ihl < 20 || total < ihl || total > p.length ? 'malformed-ipv4' : undefined;
}

/** The destination address as an unsigned 32-bit integer. The caller checked isIpv4. */
export function ipv4Destination(p: Uint8Array): number {
  return ((p[16]! << 24) | (p[17]! << 16) | (p[18]! << 8) | p[19]!) >>> 0;
}

/** The source address as an unsigned 32-bit integer. The caller checked isIpv4. */
export function ipv4Source(p: Uint8Array): number {
  return ((p[12]! << 24) | (p[13]! << 16) | (p[14]! << 8) | p[15]!) >>> 0;
}

/**
 * The unfolded one's-complement sum of the big-endian 16-bit words of `b[from..to)` (an odd last
 * byte is padded with zero), added to `sum`. Fold it with foldSum; summing into a double stays exact
 * far beyond 64 KiB of words.
 */
export function onesSum(b: Uint8Array, from: number, to: number, sum: number): number {
  let i = from;
  const even = to - ((to - from) & 1);
  for (; i < even; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (i < to) sum += b[i]! << 8;
  return sum;
}

/** Folds an onesSum into 16 bits (the Internet checksum is its complement: `~foldSum(s) & 0xffff`). */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** Writes the IPv4 header checksum of `p` (whose header is `ihl` bytes), in place. */
export function fillIpv4HeaderChecksum(p: Uint8Array, ihl: number): void {
  p[10] = 0;
  p[11] = 0;
  const c = ~foldSum(onesSum(p, 0, ihl, 0)) & 0xffff;
  p[10] = c >>> 8;
  p[11] = c & 0xff;
}

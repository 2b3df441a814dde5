/**
 * OpenSSH's pattern matching (ssh_config(5) "PATTERNS"): `*` and `?` wildcards, `!` negation in
 * comma-separated lists, and CIDR address lists (source-address, from=).
 */

/** Whether `name` matches one wildcard pattern, case-insensitively. */
export function matchPattern(pattern: string, name: string): boolean {
  const source = pattern
    .toLowerCase()
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".")
  return new RegExp(`^${source}$`, "s").test(name.toLowerCase())
}

/**
 * Matches `name` against a comma-separated pattern list: "negated" when a `!pattern` matches
 * (which overrides every positive match), "match" when a positive pattern matches, else "none".
 */
export function matchPatternList(list: string, name: string): "match" | "negated" | "none" {
  let matched = false
  for (const raw of list.split(",")) {
    const pattern = raw.trim()
    if (pattern === "") continue
    const negated = pattern.startsWith("!")
    if (matchPattern(negated ? pattern.slice(1) : pattern, name)) {
      if (negated) return "negated"
      matched = true
    }
  }
  return matched ? "match" : "none"
}

/** An IPv4 (4 bytes) or IPv6 (16 bytes) address; IPv4-mapped IPv6 addresses come back as IPv4. */
export function parseAddress(text: string): Uint8Array | undefined {
  const v4 = parseIPv4(text)
  if (v4 !== undefined) return v4
  const v6 = parseIPv6(text.replace(/%.*$/, ""))
  if (v6 === undefined) return undefined
  const mapped = v6.subarray(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff
  return mapped ? v6.slice(12) : v6
}

function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split(".")
  if (parts.length !== 4) return undefined
  const out = new Uint8Array(4)
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i]!)) return undefined
    const v = Number(parts[i])
    if (v > 255) return undefined
    out[i] = v
  }
  return out
}

function parseIPv6(text: string): Uint8Array | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(text)) return undefined
  const halves = text.split("::")
  if (halves.length > 2) return undefined
  const groups = (s: string): number[] | undefined => {
    if (s === "") return []
    const out: number[] = []
    const items = s.split(":")
    for (let i = 0; i < items.length; i++) {
      const item = items[i]!
      if (i === items.length - 1 && item.includes(".")) {
        const v4 = parseIPv4(item)
        if (v4 === undefined) return undefined
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(item)) return undefined
        out.push(parseInt(item, 16))
      }
    }
    return out
  }
  const head = groups(halves[0]!)
  const tail = halves.length === 2 ? groups(halves[1]!) : []
  if (head === undefined || tail === undefined) return undefined
  const missing = 8 - head.length - tail.length
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined
  const all = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail]
  const out = new Uint8Array(16)
  all.forEach((g, i) => {
    out[2 * i] = g >> 8
    out[2 * i + 1] = g & 0xff
  })
  return out
}

/** Whether `address` lies in `cidr` (`10.0.0.0/8`, `::1`, `192.168.1.7`); false for anything unparsable. */
export function addressInCidr(address: string, cidr: string): boolean {
  const addr = parseAddress(address)
  const slash = cidr.indexOf("/")
  const net = parseAddress(slash < 0 ? cidr : cidr.slice(0, slash))
  if (addr === undefined || net === undefined || addr.length !== net.length) return false
  if (slash >= 0 && !/^\d{1,3}$/.test(cidr.slice(slash + 1))) return false
  const bits = slash < 0 ? net.length * 8 : Number(cidr.slice(slash + 1))
  if (bits > net.length * 8) return false
  for (let i = 0; i < net.length; i++) {
    const take = Math.max(0, Math.min(8, bits - i * 8))
    const mask = take === 0 ? 0 : (0xff << (8 - take)) & 0xff
    if ((addr[i]! & mask) !== (net[i]! & mask)) return false
  }
  return true
}

/** Whether every entry of a CIDR list parses (OpenSSH refuses a certificate or option with a bad one). */
export function isValidCidrList(list: string): boolean {
  return list.split(",").every((entry) => {
    const slash = entry.indexOf("/")
    const net = parseAddress(slash < 0 ? entry : entry.slice(0, slash))
    if (net === undefined) return false
    if (slash < 0) return true
    const bits = entry.slice(slash + 1)
    return /^\d{1,3}$/.test(bits) && Number(bits) <= net.length * 8
  })
}

/** A source-address style list: true when the address is in one of its CIDR blocks. */
export function addressInCidrList(address: string, list: string): boolean {
  return list.split(",").some((entry) => addressInCidr(address, entry.trim()))
}

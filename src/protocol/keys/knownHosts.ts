import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { decodeBase64 } from "./publicKey.js"

/** One parsed known_hosts line (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"). */
export interface KnownHostsEntry {
  readonly line: number
  readonly marker: "cert-authority" | "revoked" | undefined
  /** Comma-separated patterns, or one hashed `|1|salt|hash` name. */
  readonly hosts: string
  readonly keyType: string
  readonly key: Uint8Array
}

export type KnownHostsVerdict =
  | { readonly _tag: "Match"; readonly entry: KnownHostsEntry }
  /** The host is known with other keys of this type: a possible man-in-the-middle. */
  | { readonly _tag: "Mismatch"; readonly entries: ReadonlyArray<KnownHostsEntry> }
  | { readonly _tag: "Revoked"; readonly entry: KnownHostsEntry }
  | { readonly _tag: "Unknown" }

/** Parses known_hosts text; lines it cannot read are skipped, as OpenSSH does. */
export function parseKnownHosts(text: string): ReadonlyArray<KnownHostsEntry> {
  const entries: KnownHostsEntry[] = []
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const trimmed = lines[i]!.trim()
    if (trimmed === "" || trimmed.startsWith("#")) continue
    const fields = trimmed.split(/\s+/)
    let marker: KnownHostsEntry["marker"]
    if (fields[0] === "@cert-authority" || fields[0] === "@revoked") {
      marker = fields.shift()!.slice(1) as KnownHostsEntry["marker"]
    }
    if (fields.length < 3) continue
    try {
      entries.push({ line: i + 1, marker, hosts: fields[0]!, keyType: fields[1]!, key: decodeBase64(fields[2]!, "known_hosts key") })
    } catch {
      // an unreadable key: skipped
    }
  }
  return entries
}

/** The name OpenSSH looks a host up by: `host`, or `[host]:port` off port 22. */
export function hostLookupName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`
}

/** Whether `name` matches a host field: a hashed name, or patterns with `*`, `?` and `!` negation. */
export function hostMatches(hosts: string, name: string): boolean {
  if (hosts.startsWith("|1|")) {
    const [, , salt, hash] = hosts.split("|")
    if (!salt || !hash) return false
    const expected = Buffer.from(hash, "base64")
    const actual = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest()
    return expected.length === actual.length && timingSafeEqual(expected, actual)
  }
  let matched = false
  for (const pattern of hosts.split(",")) {
    const negated = pattern.startsWith("!")
    if (globMatch(negated ? pattern.slice(1) : pattern, name)) {
      if (negated) return false
      matched = true
    }
  }
  return matched
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp(`^${pattern.toLowerCase().replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`)
  return re.test(name.toLowerCase())
}

/** Checks a host key against known_hosts entries, as OpenSSH does for plain keys. */
export function checkKnownHost(
  entries: ReadonlyArray<KnownHostsEntry>,
  host: string,
  port: number,
  keyType: string,
  key: Uint8Array
): KnownHostsVerdict {
  const name = hostLookupName(host, port)
  const forHost = entries.filter((e) => hostMatches(e.hosts, name))
  const revoked = entries.find((e) => e.marker === "revoked" && equalBytes(e.key, key))
  if (revoked) return { _tag: "Revoked", entry: revoked }
  const plain = forHost.filter((e) => e.marker === undefined)
  const match = plain.find((e) => e.keyType === keyType && equalBytes(e.key, key))
  if (match) return { _tag: "Match", entry: match }
  const sameType = plain.filter((e) => e.keyType === keyType)
  if (sameType.length > 0) return { _tag: "Mismatch", entries: sameType }
  return { _tag: "Unknown" }
}

/** A known_hosts line for a newly accepted key; `hashed` hides the host name as HashKnownHosts does. */
export function knownHostsLine(host: string, port: number, keyType: string, key: Uint8Array, hashed = false): string {
  const name = hostLookupName(host, port)
  const field = hashed ? hashHostName(name) : name
  return `${field} ${keyType} ${Buffer.from(key).toString("base64")}`
}

function hashHostName(name: string): string {
  const salt = randomBytes(20)
  const hash = createHmac("sha1", salt).update(name).digest()
  return `|1|${salt.toString("base64")}|${hash.toString("base64")}`
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

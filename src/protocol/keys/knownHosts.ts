/**
 * known_hosts (sshd(8) "SSH_KNOWN_HOSTS FILE FORMAT"): plain and hashed host names, patterns and
 * negation, `[host]:port`, `@revoked` keys and `@cert-authority` CAs, checked as ssh does.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { checkCertificate, type CertificateProblem, type SshCertificate } from "./certificate.js"
import { matchPatternList } from "./patterns.js"
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
  /** A CA trusted for the host signed the certificate, but it is not valid (expired, wrong principal, ...). */
  | { readonly _tag: "CertificateInvalid"; readonly entry: KnownHostsEntry; readonly problem: CertificateProblem; readonly message: string }
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
  return matchPatternList(hosts, name) === "match"
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

/**
 * Checks a host certificate as ssh does: a revoked certificate, key or CA is refused; a CA
 * trusted for the host (`@cert-authority`) must have signed a valid host certificate naming the
 * host; without such a CA the certified key is checked as a plain key. `now` is in milliseconds.
 */
export function checkKnownHostCertificate(
  entries: ReadonlyArray<KnownHostsEntry>,
  host: string,
  port: number,
  certificate: SshCertificate,
  now: number
): KnownHostsVerdict {
  const revoked = entries.find(
    (e) =>
      e.marker === "revoked" &&
      (equalBytes(e.key, certificate.publicKey) || equalBytes(e.key, certificate.signatureKey) || equalBytes(e.key, certificate.blob))
  )
  if (revoked) return { _tag: "Revoked", entry: revoked }
  const name = hostLookupName(host, port)
  const authority = entries.find((e) => e.marker === "cert-authority" && equalBytes(e.key, certificate.signatureKey) && hostMatches(e.hosts, name))
  if (authority === undefined) return checkKnownHost(entries, host, port, certificate.keyType, certificate.publicKey)
  const verdict = checkCertificate(certificate, { certType: "host", now, principal: host })
  return verdict.ok ? { _tag: "Match", entry: authority } : { _tag: "CertificateInvalid", entry: authority, problem: verdict.problem, message: verdict.message }
}

/** Whether some `@cert-authority` line applies to this host (ssh then prefers certificate host keys). */
export function hasCertAuthorityFor(entries: ReadonlyArray<KnownHostsEntry>, host: string, port: number): boolean {
  const name = hostLookupName(host, port)
  return entries.some((e) => e.marker === "cert-authority" && hostMatches(e.hosts, name))
}

/** A known_hosts line for a newly accepted key; `hashed` hides the host name as HashKnownHosts does. */
export function knownHostsLine(host: string, port: number, keyType: string, key: Uint8Array, hashed = false): string {
  const name = hostLookupName(host, port)
  const field = hashed ? hashHostName(name) : name
  return `${field} ${keyType} ${Buffer.from(key).toString("base64")}`
}

/** A `@cert-authority` line trusting the CA key for host certificates of hosts matching `patterns`. */
export function certAuthorityLine(patterns: string, caKeyType: string, caKey: Uint8Array): string {
  return `@cert-authority ${patterns} ${caKeyType} ${Buffer.from(caKey).toString("base64")}`
}

/** `|1|salt|hash`: HMAC-SHA1 of the name keyed with a random salt, as ssh's HashKnownHosts writes it. */
export function hashHostName(name: string, salt: Uint8Array = randomBytes(20)): string {
  const hash = createHmac("sha1", salt).update(name).digest()
  return `|1|${Buffer.from(salt).toString("base64")}|${hash.toString("base64")}`
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

/**
 * authorized_keys (sshd(8) "AUTHORIZED_KEYS FILE FORMAT"): key lines with their options, and the
 * decision sshd makes for an offered key or certificate: which line allows it, with which
 * restrictions, or why it is refused. Time and the client's address are arguments.
 */
import { isCertificateType } from "./algorithms.js"
import { checkCertificate } from "./certificate.js"
import { blobKeyType, decodeCertificate, type SshCertificate } from "./certificateEncoding.js"
import { parseAbsoluteTime } from "./certificateValidity.js"
import { KeyError } from "./errors.js"
import { equalBytes } from "./keyEncoding.js"
import { addressInCidr, matchPattern } from "./patterns.js"
import { parsePublicKeyLine, type SshPublicKey } from "./publicKey.js"

export interface AuthorizedKeyOptions {
  readonly certAuthority: boolean
  readonly command?: string
  /** `NAME=value` pairs. */
  readonly environment: ReadonlyArray<string>
  /** Seconds since the epoch after which the line no longer allows anything. */
  readonly expiryTime?: bigint
  /** Pattern list matched against the client's host name and address. */
  readonly from?: string
  /** For cert-authority lines: the principals accepted instead of the user name. */
  readonly principals?: ReadonlyArray<string>
  /** `host:port` destinations allowed for direct-tcpip. */
  readonly permitOpen: ReadonlyArray<string>
  /** `[host:]port` listeners allowed for tcpip-forward. */
  readonly permitListen: ReadonlyArray<string>
  readonly tunnel?: number
  readonly restrict: boolean
  /** Explicit permissions, as written (`pty` / `no-pty`, ...); absent when the line says nothing. */
  readonly pty?: boolean
  readonly agentForwarding?: boolean
  readonly portForwarding?: boolean
  readonly x11Forwarding?: boolean
  readonly userRc?: boolean
  readonly noTouchRequired: boolean
  readonly verifyRequired: boolean
}

export interface AuthorizedKeyEntry {
  /** 1-based line number in the file. */
  readonly line: number
  readonly options: AuthorizedKeyOptions
  /** The user key, or the CA key of a cert-authority line. */
  readonly key: SshPublicKey
}

/** What a session allowed by a line may do; the server enforces these. */
export interface Restrictions {
  /** Run this instead of whatever the client asks (command= or a certificate's force-command). */
  readonly command?: string
  readonly environment: ReadonlyArray<string>
  readonly pty: boolean
  readonly agentForwarding: boolean
  readonly portForwarding: boolean
  readonly x11Forwarding: boolean
  readonly userRc: boolean
  /** When present, the only direct-tcpip destinations allowed. */
  readonly permitOpen?: ReadonlyArray<string>
  /** When present, the only tcpip-forward listeners allowed. */
  readonly permitListen?: ReadonlyArray<string>
  readonly tunnel?: number
  readonly noTouchRequired: boolean
  readonly verifyRequired: boolean
}

export type AuthorizedKeyRefusal = "no-matching-key" | "from" | "expired" | "certificate" | "principal" | "conflicting-commands"

export type AuthorizedKeyVerdict =
  | {
      readonly _tag: "Allowed"
      /** The line that allowed it; undefined when a trusted user CA did (`trustedUserCAKeys`). */
      readonly entry: AuthorizedKeyEntry | undefined
      readonly restrictions: Restrictions
      readonly certificate?: SshCertificate
    }
  | { readonly _tag: "Refused"; readonly reason: AuthorizedKeyRefusal; readonly message: string }

const FLAG_OPTIONS: Record<string, (o: MutableOptions) => void> = {
  "cert-authority": (o) => (o.certAuthority = true),
  restrict: (o) => (o.restrict = true),
  "no-touch-required": (o) => (o.noTouchRequired = true),
  "verify-required": (o) => (o.verifyRequired = true),
  pty: (o) => (o.pty = true),
  "no-pty": (o) => (o.pty = false),
  "agent-forwarding": (o) => (o.agentForwarding = true),
  "no-agent-forwarding": (o) => (o.agentForwarding = false),
  "port-forwarding": (o) => (o.portForwarding = true),
  "no-port-forwarding": (o) => (o.portForwarding = false),
  "x11-forwarding": (o) => (o.x11Forwarding = true),
  "no-x11-forwarding": (o) => (o.x11Forwarding = false),
  "user-rc": (o) => (o.userRc = true),
  "no-user-rc": (o) => (o.userRc = false)
}

type MutableOptions = { -readonly [K in keyof AuthorizedKeyOptions]: AuthorizedKeyOptions[K] } & {
  environment: string[]
  permitOpen: string[]
  permitListen: string[]
}

function valueOption(o: MutableOptions, name: string, value: string): void {
  switch (name) {
    case "command":
      o.command = value
      return
    case "environment":
      if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(value)) throw new KeyError("corrupt", `environment="${value}" is not NAME=value`)
      o.environment.push(value)
      return
    case "from":
      o.from = value
      return
    case "principals":
      o.principals = value.split(",").filter((p) => p !== "")
      return
    case "permitopen":
      if (!/^(?:\[[^\]]+\]|[^:]+):(?:\d{1,5}|\*)$/.test(value)) throw new KeyError("corrupt", `permitopen="${value}" is not host:port`)
      o.permitOpen.push(value)
      return
    case "permitlisten":
      if (!/^(?:(?:\[[^\]]+\]|[^:]+):)?(?:\d{1,5}|\*)$/.test(value)) throw new KeyError("corrupt", `permitlisten="${value}" is not [host:]port`)
      o.permitListen.push(value)
      return
    case "expiry-time": {
      const t = parseAbsoluteTime(value)
      if (t === undefined) throw new KeyError("corrupt", `expiry-time="${value}" is not YYYYMMDD[HHMM[SS]]`)
      o.expiryTime = t
      return
    }
    case "tunnel": {
      if (!/^\d{1,9}$/.test(value)) throw new KeyError("corrupt", `tunnel="${value}" is not a number`)
      o.tunnel = Number(value)
      return
    }
    default:
      throw new KeyError("corrupt", `unknown option ${JSON.stringify(name.slice(0, 40))}`)
  }
}

function emptyOptions(): MutableOptions {
  return { certAuthority: false, environment: [], permitOpen: [], permitListen: [], restrict: false, noTouchRequired: false, verifyRequired: false }
}

/** Reads the options field; returns them and where the key type starts. */
function readOptions(text: string): { options: AuthorizedKeyOptions; rest: string } {
  const o = emptyOptions()
  let i = 0
  for (;;) {
    const nameMatch = /^[A-Za-z0-9-]+/.exec(text.slice(i))
    if (nameMatch === null) throw new KeyError("corrupt", "malformed options field")
    const name = nameMatch[0].toLowerCase()
    i += nameMatch[0].length
    if (text[i] === "=") {
      if (text[++i] !== '"') throw new KeyError("corrupt", `${name}= needs a double-quoted value`)
      let value = ""
      for (i++; ; i++) {
        if (i >= text.length) throw new KeyError("corrupt", `unterminated quoted value of ${name}`)
        if (text[i] === "\\" && text[i + 1] === '"') {
          value += '"'
          i++
        } else if (text[i] === '"') {
          i++
          break
        } else value += text[i]
      }
      valueOption(o, name, value)
    } else {
      const flag = FLAG_OPTIONS[name]
      if (flag === undefined) throw new KeyError("corrupt", `unknown option ${JSON.stringify(name.slice(0, 40))}`)
      flag(o)
    }
    if (text[i] === ",") {
      i++
      continue
    }
    if (i < text.length && /\s/.test(text[i]!)) return { options: o, rest: text.slice(i).trimStart() }
    throw new KeyError("corrupt", "options must be followed by a key")
  }
}

function looksLikeKeyType(token: string): boolean {
  return /^(?:ssh-|ecdsa-sha2-|sk-)/.test(token)
}

/** Parses one authorized_keys line (not blank, not a comment); throws KeyError("corrupt"). */
export function parseAuthorizedKeyLine(text: string, line = 1): AuthorizedKeyEntry {
  const trimmed = text.trim()
  const first = trimmed.split(/\s/, 1)[0]!
  const { options, rest } = looksLikeKeyType(first) ? { options: emptyOptions(), rest: trimmed } : readOptions(trimmed)
  const key = parsePublicKeyLine(rest)
  if (key.certificate !== undefined) throw new KeyError("corrupt", "a certificate cannot be listed in authorized_keys; list its CA with cert-authority")
  if (options.principals !== undefined && !options.certAuthority) throw new KeyError("corrupt", "principals= only applies to cert-authority lines")
  return { line, options, key }
}

/** Parses an authorized_keys file. Bad lines are reported and skipped, as sshd skips them. */
export function parseAuthorizedKeys(text: string): {
  readonly entries: ReadonlyArray<AuthorizedKeyEntry>
  readonly errors: ReadonlyArray<{ readonly line: number; readonly message: string }>
} {
  const entries: AuthorizedKeyEntry[] = []
  const errors: { line: number; message: string }[] = []
  text.split(/\r?\n/).forEach((raw, index) => {
    const trimmed = raw.trim()
    if (trimmed === "" || trimmed.startsWith("#")) return
    try {
      entries.push(parseAuthorizedKeyLine(trimmed, index + 1))
    } catch (e) {
      errors.push({ line: index + 1, message: e instanceof Error ? e.message : String(e) })
    }
  })
  return { entries, errors }
}

export interface AuthorizeRequest {
  readonly username: string
  /** The offered key or certificate blob. */
  readonly key: Uint8Array
  /** The client's IP address, for from= and source-address. */
  readonly clientAddress?: string
  /** The client's host name, when known (from= may name hosts). */
  readonly clientHostname?: string
  /** Milliseconds since the epoch. */
  readonly now: number
  /** CA keys trusted for every user whose name is a certificate principal (sshd's TrustedUserCAKeys). */
  readonly trustedUserCAKeys?: ReadonlyArray<Uint8Array>
}

const refused = (reason: AuthorizedKeyRefusal, message: string): AuthorizedKeyVerdict => ({ _tag: "Refused", reason, message })

/** sshd's from= check: a negated match refuses, a positive one on the host name or address allows. */
function fromAllows(patterns: string, address: string | undefined, hostname: string | undefined): boolean {
  let allowed = false
  for (const raw of patterns.split(",")) {
    const negated = raw.startsWith("!")
    const pattern = negated ? raw.slice(1) : raw
    const hit =
      (address !== undefined && (pattern.includes("/") ? addressInCidr(address, pattern) : matchPattern(pattern, address))) ||
      (hostname !== undefined && !pattern.includes("/") && matchPattern(pattern, hostname))
    if (hit && negated) return false
    if (hit) allowed = true
  }
  return allowed
}

/** The restrictions a line's options impose; `undefined` (no line) imposes none. */
export function restrictionsOf(o: AuthorizedKeyOptions | undefined): Restrictions {
  const base = !(o?.restrict ?? false)
  return {
    ...(o?.command !== undefined ? { command: o.command } : {}),
    environment: o?.environment ?? [],
    pty: o?.pty ?? base,
    agentForwarding: o?.agentForwarding ?? base,
    portForwarding: o?.portForwarding ?? base,
    x11Forwarding: o?.x11Forwarding ?? base,
    userRc: o?.userRc ?? base,
    ...(o !== undefined && o.permitOpen.length > 0 ? { permitOpen: o.permitOpen } : {}),
    ...(o !== undefined && o.permitListen.length > 0 ? { permitListen: o.permitListen } : {}),
    ...(o?.tunnel !== undefined ? { tunnel: o.tunnel } : {}),
    noTouchRequired: o?.noTouchRequired ?? false,
    verifyRequired: o?.verifyRequired ?? false
  }
}

/**
 * A certificate narrows a line's permissions: what its extensions do not permit is denied, and
 * its force-command is added. A string (the reason) when both force different commands.
 */
export function withCertificate(r: Restrictions, cert: SshCertificate): Restrictions | string {
  const forced = cert.criticalOptions.get("force-command")
  if (forced !== undefined && r.command !== undefined && forced !== r.command) return "the certificate and the key options force different commands"
  const has = (name: string) => cert.extensions.has(name)
  return {
    ...r,
    ...(forced !== undefined ? { command: forced } : {}),
    pty: r.pty && has("permit-pty"),
    agentForwarding: r.agentForwarding && has("permit-agent-forwarding"),
    portForwarding: r.portForwarding && has("permit-port-forwarding"),
    x11Forwarding: r.x11Forwarding && has("permit-X11-forwarding"),
    userRc: r.userRc && has("permit-user-rc"),
    noTouchRequired: r.noTouchRequired || has("no-touch-required"),
    verifyRequired: r.verifyRequired || cert.criticalOptions.has("verify-required")
  }
}

/**
 * What two authentications together allow, for multi-factor logins (sshd merges the options of
 * each method that succeeded): every permission must be granted by both. A string (the reason)
 * when they force different commands or tunnels.
 */
export function intersectRestrictions(a: Restrictions, b: Restrictions): Restrictions | string {
  if (a.command !== undefined && b.command !== undefined && a.command !== b.command) return "two authentications force different commands"
  if (a.tunnel !== undefined && b.tunnel !== undefined && a.tunnel !== b.tunnel) return "two authentications force different tunnels"
  const both = (x: ReadonlyArray<string> | undefined, y: ReadonlyArray<string> | undefined) =>
    x === undefined ? y : y === undefined ? x : x.filter((v) => y.includes(v))
  const permitOpen = both(a.permitOpen, b.permitOpen)
  const permitListen = both(a.permitListen, b.permitListen)
  const command = a.command ?? b.command
  const tunnel = a.tunnel ?? b.tunnel
  return {
    ...(command !== undefined ? { command } : {}),
    environment: [...a.environment, ...b.environment],
    pty: a.pty && b.pty,
    agentForwarding: a.agentForwarding && b.agentForwarding,
    portForwarding: a.portForwarding && b.portForwarding,
    x11Forwarding: a.x11Forwarding && b.x11Forwarding,
    userRc: a.userRc && b.userRc,
    ...(permitOpen !== undefined ? { permitOpen } : {}),
    ...(permitListen !== undefined ? { permitListen } : {}),
    ...(tunnel !== undefined ? { tunnel } : {}),
    noTouchRequired: a.noTouchRequired && b.noTouchRequired,
    verifyRequired: a.verifyRequired || b.verifyRequired
  }
}

/**
 * Decides, as sshd does, whether the offered key or certificate may log in as `username`:
 * the first line that allows it wins; a certificate needs a `cert-authority` line with its CA
 * (principals= or else the user name among its principals) or a trusted user CA.
 */
export function authorizeKey(entries: ReadonlyArray<AuthorizedKeyEntry>, request: AuthorizeRequest): AuthorizedKeyVerdict {
  const type = blobKeyType(request.key)
  let certificate: SshCertificate | undefined
  if (type !== undefined && isCertificateType(type)) {
    try {
      certificate = decodeCertificate(request.key)
    } catch (e) {
      return refused("certificate", `malformed certificate: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  const nowSeconds = BigInt(Math.floor(request.now / 1000))
  let lastRefusal: AuthorizedKeyVerdict | undefined

  const allowCertificate = (cert: SshCertificate, entry: AuthorizedKeyEntry | undefined): AuthorizedKeyVerdict => {
    const principals = entry?.options.principals
    const verdict = checkCertificate(cert, {
      certType: "user",
      now: request.now,
      ...(principals === undefined ? { principal: request.username } : {}),
      ...(request.clientAddress !== undefined ? { clientAddress: request.clientAddress } : {})
    })
    if (!verdict.ok) return refused("certificate", verdict.message)
    if (principals !== undefined && !cert.principals.some((p) => principals.includes(p))) {
      return refused("principal", `none of the certificate's principals (${cert.principals.join(", ")}) is allowed by line ${entry!.line}`)
    }
    const r = withCertificate(restrictionsOf(entry?.options), cert)
    if (typeof r === "string") return refused("conflicting-commands", r)
    return { _tag: "Allowed", entry, restrictions: r, certificate: cert }
  }

  for (const entry of entries) {
    const o = entry.options
    const matches = certificate
      ? o.certAuthority
        ? equalBytes(entry.key.blob, certificate.signatureKey)
        : equalBytes(entry.key.blob, certificate.publicKey)
      : !o.certAuthority && equalBytes(entry.key.blob, request.key)
    if (!matches) continue
    if (o.expiryTime !== undefined && nowSeconds >= o.expiryTime) {
      lastRefusal = refused("expired", `the key on line ${entry.line} expired (expiry-time)`)
      continue
    }
    if (o.from !== undefined && !fromAllows(o.from, request.clientAddress, request.clientHostname)) {
      lastRefusal = refused("from", `line ${entry.line} does not allow connections from ${request.clientHostname ?? request.clientAddress ?? "an unknown address"}`)
      continue
    }
    if (certificate && o.certAuthority) {
      const verdict = allowCertificate(certificate, entry)
      if (verdict._tag === "Allowed") return verdict
      lastRefusal = verdict
      continue
    }
    const r = restrictionsOf(o)
    if (certificate) {
      const narrowed = withCertificate(r, certificate)
      if (typeof narrowed === "string") return refused("conflicting-commands", narrowed)
      return { _tag: "Allowed", entry, restrictions: narrowed, certificate }
    }
    return { _tag: "Allowed", entry, restrictions: r }
  }
  if (certificate && request.trustedUserCAKeys?.some((ca) => equalBytes(ca, certificate.signatureKey))) {
    return allowCertificate(certificate, undefined)
  }
  return lastRefusal ?? refused("no-matching-key", certificate ? "no line trusts the certificate's CA or key" : "the key is not in authorized_keys")
}

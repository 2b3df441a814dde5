/**
 * Host key verification from a known_hosts file, with OpenSSH's StrictHostKeyChecking policies
 * and `@cert-authority` host certificates. A changed key is always refused with a
 * `KnownHostsError` naming the file and line.
 *
 * @example
 * const ssh = yield* SshClient.connect({
 *   host, username, auth,
 *   hostVerifier: KnownHosts.verifier({ file: `${homedir()}/.ssh/known_hosts`, strict: "accept-new" }),
 *   algorithms: { hostKey: KnownHosts.hostKeyAlgorithms(file, host, port) ?? {} }
 * })
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from "node:fs"
import { dirname } from "node:path"
import * as Effect from "effect/Effect"
import * as Schema from "effect/Schema"
import {
  checkKnownHost,
  checkKnownHostCertificate,
  hasCertAuthorityFor,
  knownHostsLine,
  parseKnownHosts,
  type KnownHostsEntry,
  type KnownHostsVerdict
} from "./protocol/keys/knownHosts.js"
import { fingerprint, parsePublicKeyBlob } from "./protocol/keys/publicKey.js"
import { CERTIFICATE_HOST_KEY_ALGORITHMS, type AlgorithmChoice } from "./protocol/transport/algorithms.js"
import type { HostKeyInfo, HostVerifier } from "./SshClient.js"

/** Why a host key was refused. */
export class KnownHostsError extends Schema.TaggedError<KnownHostsError>()("KnownHostsError", {
  reason: Schema.Literal("mismatch", "revoked", "unknown", "certificate", "io"),
  message: Schema.String,
  file: Schema.String,
  /** The known_hosts line(s) involved, 1-based. */
  lines: Schema.Array(Schema.Number),
  host: Schema.String,
  cause: Schema.optional(Schema.Unknown)
}) {}

/** OpenSSH's StrictHostKeyChecking: `off` is `no`. */
export type StrictHostKeyChecking = "yes" | "accept-new" | "no" | "off" | "ask"

export interface VerifierOptions {
  readonly file: string
  /** Default "yes": unknown hosts are refused. */
  readonly strict?: StrictHostKeyChecking
  /** Record new hosts hashed (`|1|salt|hash`), as HashKnownHosts yes. */
  readonly hash?: boolean
  /** For "ask": asks whether to trust an unknown host; without it "ask" behaves as "yes". */
  readonly ask?: (info: HostKeyInfo, keyType: string) => Effect.Effect<boolean>
  /** Notices such as "Permanently added ..."; default: none. */
  readonly onNotice?: (message: string) => void
  /** Clock for certificate validity, in milliseconds; default Date.now. */
  readonly now?: () => number
}

const readEntries = (file: string): Effect.Effect<ReadonlyArray<KnownHostsEntry>, KnownHostsError> =>
  Effect.try({
    try: () => parseKnownHosts(existsSync(file) ? readFileSync(file, "utf8") : ""),
    catch: (cause) =>
      new KnownHostsError({ reason: "io", message: `cannot read ${file}: ${String((cause as Error)?.message ?? cause)}`, file, lines: [], host: "", cause })
  })

/** The verdict of a known_hosts file for a host key (plain or certificate), without any policy applied. */
export const check = (file: string, info: HostKeyInfo, now: number = Date.now()): Effect.Effect<KnownHostsVerdict, KnownHostsError> =>
  Effect.map(readEntries(file), (entries) =>
    info.certificate
      ? checkKnownHostCertificate(entries, info.host, info.port, info.certificate, now)
      : checkKnownHost(entries, info.host, info.port, parsePublicKeyBlob(info.key).type, info.key)
  )

/** Appends a host key to a known_hosts file (creating it 0600 in a 0700 directory), hashed on request. */
export const add = (
  file: string,
  host: string,
  port: number,
  key: Uint8Array,
  options: { readonly hash?: boolean } = {}
): Effect.Effect<void, KnownHostsError> =>
  Effect.try({
    try: () => {
      const parsed = parsePublicKeyBlob(key)
      const blob = parsed.certificate?.publicKey ?? key
      const type = parsed.certificate?.keyType ?? parsed.type
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
      appendFileSync(file, `${knownHostsLine(host, port, type, blob, options.hash ?? false)}\n`, { mode: 0o600 })
    },
    catch: (cause) =>
      new KnownHostsError({ reason: "io", message: `cannot add ${host} to ${file}: ${String((cause as Error)?.message ?? cause)}`, file, lines: [], host, cause })
  })

/**
 * Host key algorithms to offer for this host, as ssh orders them: when a `@cert-authority`
 * line covers the host, certificate algorithms come first. Undefined otherwise (keep the defaults).
 */
export function hostKeyAlgorithms(file: string, host: string, port: number): AlgorithmChoice | undefined {
  let entries: ReadonlyArray<KnownHostsEntry>
  try {
    entries = parseKnownHosts(existsSync(file) ? readFileSync(file, "utf8") : "")
  } catch {
    return undefined
  }
  return hasCertAuthorityFor(entries, host, port) ? { prepend: [...CERTIFICATE_HOST_KEY_ALGORITHMS] } : undefined
}

/**
 * A host verifier backed by a known_hosts file. A known key (or a valid certificate from a CA
 * trusted for the host) is accepted; a changed, revoked or invalid one fails with a
 * KnownHostsError naming the file and line; an unknown one is refused ("yes"), recorded
 * ("accept-new", "no") or asked about ("ask").
 */
export function verifier(options: VerifierOptions): HostVerifier {
  const strict = options.strict ?? "yes"
  return (info: HostKeyInfo) =>
    Effect.gen(function* () {
      const verdict = yield* check(options.file, info, (options.now ?? Date.now)())
      const keyType = info.certificate?.keyType ?? parsePublicKeyBlob(info.key).type
      const fail = (reason: KnownHostsError["reason"], message: string, lines: ReadonlyArray<number>) =>
        Effect.fail(new KnownHostsError({ reason, message, file: options.file, lines: [...lines], host: info.host }))
      switch (verdict._tag) {
        case "Match":
          return true
        case "Revoked":
          return yield* fail("revoked", `the ${keyType} host key of ${info.host} is marked as revoked (${options.file}:${verdict.entry.line})`, [verdict.entry.line])
        case "CertificateInvalid":
          return yield* fail(
            "certificate",
            `the host certificate of ${info.host} was refused (its CA is trusted at ${options.file}:${verdict.entry.line}): ${verdict.message}`,
            [verdict.entry.line]
          )
        case "Mismatch": {
          const where = verdict.entries.map((e) => `${options.file}:${e.line}`).join(", ")
          const shown = info.certificate ? fingerprint(info.certificate.publicKey) : info.fingerprint
          return yield* fail(
            "mismatch",
            `@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@ The ${keyType} key of ${info.host} is now ${shown}, ` +
              `but ${where} holds another. Someone could be eavesdropping on you (man-in-the-middle), or the host key was replaced; ` +
              `remove the old line if you trust the new key.`,
            verdict.entries.map((e) => e.line)
          )
        }
        case "Unknown":
          break
      }
      const record = Effect.gen(function* () {
        if (options.file === "/dev/null") return true
        yield* add(options.file, info.host, info.port, info.key, options.hash !== undefined ? { hash: options.hash } : {})
        options.onNotice?.(`Warning: Permanently added ${info.host} (${keyType}) to the list of known hosts (${options.file}).`)
        return true
      })
      switch (strict) {
        case "no":
        case "off":
        case "accept-new":
          return yield* record
        case "ask":
          if (options.ask !== undefined && (yield* options.ask(info, keyType))) return yield* record
          break
      }
      return yield* fail(
        "unknown",
        `No ${keyType} host key is known for ${info.host} (fingerprint ${info.fingerprint}) in ${options.file}; ` +
          `refusing (StrictHostKeyChecking=${strict}). Use StrictHostKeyChecking=accept-new to trust it on first use.`,
        []
      )
    })
}

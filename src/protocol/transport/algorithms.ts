import { CIPHERS, DEFAULT_CIPHERS } from "../crypto/ciphers.js"
import { DEFAULT_MACS, MACS } from "../crypto/macs.js"
import { DEFAULT_KEX, KEX_METHODS } from "../kex/methods.js"
import type { AlgorithmLists } from "./transport.js"

export type Category = "kex" | "hostKey" | "cipher" | "mac" | "compression"

/**
 * OpenSSH host certificate algorithms (PROTOCOL.certkeys), verified with the certified key; the
 * certificate itself is for the host verifier to judge (a known_hosts `@cert-authority` line).
 * Not in the defaults: a verifier that pins plain keys would refuse a certificate, so callers opt
 * in (`KnownHosts.hostKeyAlgorithms` does when a CA line covers the host, as ssh does).
 */
export const CERTIFICATE_HOST_KEY_ALGORITHMS: ReadonlyArray<string> = [
  "ssh-ed25519-cert-v01@openssh.com",
  "ecdsa-sha2-nistp256-cert-v01@openssh.com",
  "ecdsa-sha2-nistp384-cert-v01@openssh.com",
  "ecdsa-sha2-nistp521-cert-v01@openssh.com",
  "rsa-sha2-512-cert-v01@openssh.com",
  "rsa-sha2-256-cert-v01@openssh.com"
]

/** Host key algorithms this implementation can verify and sign. */
export const HOST_KEY_ALGORITHMS: ReadonlyArray<string> = [
  ...CERTIFICATE_HOST_KEY_ALGORITHMS,
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "rsa-sha2-512",
  "rsa-sha2-256",
  "ssh-rsa",
  "ssh-dss"
]
/** OpenSSH's defaults without the certificate algorithms: no SHA-1 signatures, no DSA. */
export const DEFAULT_HOST_KEY_ALGORITHMS: ReadonlyArray<string> = HOST_KEY_ALGORITHMS.filter(
  (a) => a !== "ssh-rsa" && a !== "ssh-dss" && !CERTIFICATE_HOST_KEY_ALGORITHMS.includes(a)
)
export const COMPRESSION_METHODS: ReadonlyArray<string> = ["none", "zlib@openssh.com", "zlib"]
export const DEFAULT_COMPRESSION: ReadonlyArray<string> = ["none", "zlib@openssh.com"]

export const SUPPORTED: Readonly<Record<Category, ReadonlyArray<string>>> = {
  kex: KEX_METHODS,
  hostKey: HOST_KEY_ALGORITHMS,
  cipher: Object.keys(CIPHERS).filter((c) => c !== "none"),
  mac: Object.keys(MACS).filter((m) => m !== "none"),
  compression: COMPRESSION_METHODS
}

export const DEFAULTS: AlgorithmLists = {
  kex: DEFAULT_KEX,
  hostKey: DEFAULT_HOST_KEY_ALGORITHMS,
  cipher: DEFAULT_CIPHERS,
  mac: DEFAULT_MACS,
  compression: DEFAULT_COMPRESSION
}

type Matcher = string | RegExp
/**
 * A user's choice for one category, as the ssh2 README documents it: an exact list, or
 * changes to the defaults. Appended and prepended names may be any supported algorithm.
 */
export type AlgorithmChoice =
  | ReadonlyArray<string>
  | { readonly append?: Matcher | ReadonlyArray<Matcher>; readonly prepend?: Matcher | ReadonlyArray<Matcher>; readonly remove?: Matcher | ReadonlyArray<Matcher> }

export type AlgorithmOptions = Partial<Record<Category, AlgorithmChoice>>

/** An algorithm option named something this library does not implement. */
export class UnknownAlgorithmError extends Error {
  override readonly name = "UnknownAlgorithmError"
  constructor(
    readonly category: Category,
    readonly algorithm: string
  ) {
    super(`unknown ${category} algorithm "${algorithm}"; supported: ${SUPPORTED[category].join(", ")}`)
  }
}

/** Resolves the `algorithms` option into exact lists, rejecting unknown names up front. */
export function resolveAlgorithms(options: AlgorithmOptions = {}): AlgorithmLists {
  const pick = (category: Category): ReadonlyArray<string> => {
    const choice = options[category]
    const supported = SUPPORTED[category]
    if (choice === undefined) return DEFAULTS[category]
    if (isList(choice)) {
      for (const name of choice) if (!supported.includes(name)) throw new UnknownAlgorithmError(category, name)
      return [...new Set(choice)]
    }
    const expand = (m: Matcher | ReadonlyArray<Matcher> | undefined): string[] => {
      const matchers = m === undefined ? [] : Array.isArray(m) ? (m as ReadonlyArray<Matcher>) : [m as Matcher]
      return matchers.flatMap((x) => {
        if (typeof x !== "string") return supported.filter((s) => x.test(s))
        if (!supported.includes(x)) throw new UnknownAlgorithmError(category, x)
        return [x]
      })
    }
    const removed = new Set(expand(choice.remove))
    const prepend = expand(choice.prepend)
    const append = expand(choice.append)
    const result = [...prepend, ...DEFAULTS[category], ...append].filter((a) => !removed.has(a))
    return [...new Set(result)]
  }
  return {
    kex: pick("kex"),
    hostKey: pick("hostKey"),
    cipher: pick("cipher"),
    mac: pick("mac"),
    compression: pick("compression")
  }
}

function isList(c: AlgorithmChoice): c is ReadonlyArray<string> {
  return Array.isArray(c)
}

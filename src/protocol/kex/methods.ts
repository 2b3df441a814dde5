import { randomBytes as nodeRandomBytes } from "node:crypto"
import { kexFailure } from "./errors.js"
import { DEFAULT_GEX_REQUEST, gexClient, gexServer } from "./gex.js"
import { oneRoundClient, oneRoundServer } from "./one-round.js"
import type { OneRoundScheme } from "./one-round.js"
import { curve25519, ecdhScheme, mlkem768x25519, modpScheme } from "./schemes.js"
import type { ClientKex, ExchangeInputs, HashName, KexOptions, RandomBytes, ServerHostKey, ServerKex } from "./types.js"

export type {
  ClientKex,
  ClientKexResult,
  ExchangeInputs,
  HashName,
  KexOptions,
  KexOutcome,
  ServerHostKey,
  ServerKex
} from "./types.js"

type Method = { readonly oneRound: OneRoundScheme } | { readonly groupExchange: HashName }

const METHODS: ReadonlyMap<string, Method> = new Map<string, Method>([
  ["mlkem768x25519-sha256", { oneRound: mlkem768x25519 }],
  ["curve25519-sha256", { oneRound: curve25519 }],
  ["curve25519-sha256@libssh.org", { oneRound: curve25519 }],
  ["ecdh-sha2-nistp256", { oneRound: ecdhScheme("prime256v1", "sha256") }],
  ["ecdh-sha2-nistp384", { oneRound: ecdhScheme("secp384r1", "sha384") }],
  ["ecdh-sha2-nistp521", { oneRound: ecdhScheme("secp521r1", "sha512") }],
  ["diffie-hellman-group-exchange-sha256", { groupExchange: "sha256" }],
  ["diffie-hellman-group16-sha512", { oneRound: modpScheme("modp16", "sha512") }],
  ["diffie-hellman-group18-sha512", { oneRound: modpScheme("modp18", "sha512") }],
  ["diffie-hellman-group14-sha256", { oneRound: modpScheme("modp14", "sha256") }],
  ["diffie-hellman-group15-sha512", { oneRound: modpScheme("modp15", "sha512") }],
  ["diffie-hellman-group17-sha512", { oneRound: modpScheme("modp17", "sha512") }],
  ["diffie-hellman-group14-sha1", { oneRound: modpScheme("modp14", "sha1") }],
  ["diffie-hellman-group-exchange-sha1", { groupExchange: "sha1" }],
  ["diffie-hellman-group1-sha1", { oneRound: modpScheme("modp2", "sha1") }]
])

/** Every key-exchange method implemented, in both roles. */
export const KEX_METHODS: ReadonlyArray<string> = [...METHODS.keys()]

/** The secure defaults, OpenSSH's order with the post-quantum hybrid first. */
export const DEFAULT_KEX: ReadonlyArray<string> = [
  "mlkem768x25519-sha256",
  "curve25519-sha256",
  "curve25519-sha256@libssh.org",
  "ecdh-sha2-nistp256",
  "ecdh-sha2-nistp384",
  "ecdh-sha2-nistp521",
  "diffie-hellman-group-exchange-sha256",
  "diffie-hellman-group16-sha512",
  "diffie-hellman-group18-sha512",
  "diffie-hellman-group14-sha256"
]

function lookup(method: string): Method {
  const m = METHODS.get(method)
  if (!m) throw kexFailure(`unsupported key exchange method "${method}"`)
  return m
}

function randomSource(options: KexOptions | undefined): RandomBytes {
  return options?.randomBytes ?? ((n) => new Uint8Array(nodeRandomBytes(n)))
}

/** The client side of a negotiated method: call `start()`, then feed it the server's kex messages. */
export function createClientKex(method: string, inputs: ExchangeInputs, options?: KexOptions): ClientKex {
  const m = lookup(method)
  const random = randomSource(options)
  if ("oneRound" in m) return oneRoundClient(m.oneRound, inputs, random)
  return gexClient(m.groupExchange, inputs, random, options?.gex ?? DEFAULT_GEX_REQUEST)
}

/** The server side of a negotiated method: feed it the client's kex messages; it signs H with `hostKey`. */
export function createServerKex(method: string, inputs: ExchangeInputs, hostKey: ServerHostKey, options?: KexOptions): ServerKex {
  const m = lookup(method)
  const random = randomSource(options)
  if ("oneRound" in m) return oneRoundServer(m.oneRound, inputs, hostKey, random)
  return gexServer(m.groupExchange, inputs, hostKey, random)
}

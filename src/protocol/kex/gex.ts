import { Msg } from "../wire/messages.js"
import type { SshReader } from "../wire/reader.js"
import { message, SshWriter } from "../wire/writer.js"
import { kexFailure, readMessage, unexpectedMessage } from "./errors.js"
import { exchangeHash, mpintSecret } from "./exchange-hash.js"
import { bitLength, dhKeyPair, GEX_GROUPS, modpGroup } from "./modp.js"
import type { DhKeyPair, ModpGroup } from "./modp.js"
import type { ClientKex, ExchangeInputs, HashName, RandomBytes, ServerHostKey, ServerKex } from "./types.js"

/**
 * What a client asks for by default. 2048 is RFC 8270's floor and 8192 the largest group
 * deployed (RFC 3526 group 18, OpenSSH's DH_GRP_MAX). 4096 sits above the ~3250 bits RFC 3766
 * estimates for 128-bit strength, so it covers the 128-bit ciphers with margin, while costing
 * the server a fraction of what an 8192-bit exchange does.
 */
export const DEFAULT_GEX_REQUEST = { min: 2048, preferred: 4096, max: 8192 } as const

interface GexRequest {
  readonly min: number
  readonly preferred: number
  readonly max: number
}

/** The RFC 4419 §3 exchange-hash fields between K_S and K. */
function hashFields(req: GexRequest, group: ModpGroup, e: bigint, f: bigint): Uint8Array {
  return new SshWriter(2048)
    .uint32(req.min)
    .uint32(req.preferred)
    .uint32(req.max)
    .mpint(group.p)
    .mpint(group.g)
    .mpint(e)
    .mpint(f)
    .finish()
}

function positiveMpint(r: SshReader, what: string): bigint {
  const v = r.mpint()
  if (v < 0n) throw kexFailure(`negative ${what}`)
  return v
}

export function gexClient(hash: HashName, inputs: ExchangeInputs, random: RandomBytes, request: GexRequest): ClientKex {
  if (!(request.min <= request.preferred && request.preferred <= request.max)) {
    throw kexFailure(`group exchange sizes must satisfy min <= preferred <= max, got ${request.min}/${request.preferred}/${request.max}`)
  }
  type State =
    | { readonly step: "idle" }
    | { readonly step: "await-group" }
    | { readonly step: "await-reply"; readonly group: ModpGroup; readonly pair: DhKeyPair }
    | { readonly step: "done" }
  let state: State = { step: "idle" }
  return {
    start() {
      if (state.step !== "idle") throw kexFailure("key exchange already started")
      state = { step: "await-group" }
      return [message((w) => w.byte(Msg.KEX_DH_GEX_REQUEST).uint32(request.min).uint32(request.preferred).uint32(request.max), 16)]
    },
    receive(payload) {
      switch (state.step) {
        case "await-group": {
          const group = readMessage(payload, Msg.KEX_DH_GEX_GROUP, "KEX_DH_GEX_GROUP (31)", (r) => ({
            p: positiveMpint(r, "group prime"),
            g: positiveMpint(r, "group generator")
          }))
          const bits = bitLength(group.p)
          if (bits < request.min || bits > request.max) {
            throw kexFailure(`server's group is ${bits} bits, outside the requested ${request.min}-${request.max}`)
          }
          if ((group.p & 1n) === 0n || group.g <= 1n || group.g >= group.p - 1n) throw kexFailure("server's Diffie-Hellman group is invalid")
          const pair = dhKeyPair(group, random)
          state = { step: "await-reply", group, pair }
          return { send: [message((w) => w.byte(Msg.KEX_DH_GEX_INIT).mpint(pair.publicKey), bits / 8 + 16)] }
        }
        case "await-reply": {
          const { group, pair } = state
          const reply = readMessage(payload, Msg.KEX_DH_GEX_REPLY, "KEX_DH_GEX_REPLY (33)", (r) => ({
            hostKey: r.string(),
            f: positiveMpint(r, "Diffie-Hellman public value"),
            signature: r.string()
          }))
          const K = mpintSecret(pair.agree(reply.f))
          const H = exchangeHash(hash, inputs, reply.hostKey, hashFields(request, group, pair.publicKey, reply.f), K)
          state = { step: "done" }
          return { send: [], result: { hash, K, H, hostKey: reply.hostKey.slice(), signature: reply.signature.slice() } }
        }
        default:
          throw unexpectedMessage(payload[0], "nothing (exchange not started or already finished)")
      }
    }
  }
}

/** The smallest offered group of at least the preferred size, else the largest within the bounds. */
export function chooseGexGroup(request: GexRequest): ModpGroup {
  const fitting = GEX_GROUPS.map(modpGroup).filter((g) => {
    const bits = bitLength(g.p)
    return bits >= request.min && bits <= request.max
  })
  const chosen = fitting.find((g) => bitLength(g.p) >= request.preferred) ?? fitting[fitting.length - 1]
  if (!chosen) throw kexFailure(`no Diffie-Hellman group between ${request.min} and ${request.max} bits`)
  return chosen
}

export function gexServer(hash: HashName, inputs: ExchangeInputs, hostKey: ServerHostKey, random: RandomBytes): ServerKex {
  type State =
    | { readonly step: "await-request" }
    | { readonly step: "await-init"; readonly request: GexRequest; readonly group: ModpGroup }
    | { readonly step: "done" }
  let state: State = { step: "await-request" }
  return {
    receive(payload) {
      switch (state.step) {
        case "await-request": {
          const request = readMessage(payload, Msg.KEX_DH_GEX_REQUEST, "KEX_DH_GEX_REQUEST (34)", (r) => ({
            min: r.uint32(),
            preferred: r.uint32(),
            max: r.uint32()
          }))
          if (!(request.min <= request.preferred && request.preferred <= request.max)) {
            throw kexFailure(`invalid group exchange request ${request.min}/${request.preferred}/${request.max}`)
          }
          const group = chooseGexGroup(request)
          state = { step: "await-init", request, group }
          return { send: [message((w) => w.byte(Msg.KEX_DH_GEX_GROUP).mpint(group.p).mpint(group.g), 1100)] }
        }
        case "await-init": {
          const { request, group } = state
          const e = readMessage(payload, Msg.KEX_DH_GEX_INIT, "KEX_DH_GEX_INIT (32)", (r) => positiveMpint(r, "Diffie-Hellman public value"))
          const pair = dhKeyPair(group, random)
          const K = mpintSecret(pair.agree(e))
          const H = exchangeHash(hash, inputs, hostKey.blob, hashFields(request, group, e, pair.publicKey), K)
          const signature = hostKey.sign(H)
          state = { step: "done" }
          const reply = message(
            (w) => w.byte(Msg.KEX_DH_GEX_REPLY).string(hostKey.blob).mpint(pair.publicKey).string(signature),
            hostKey.blob.length + signature.length + 1100
          )
          return { send: [reply], result: { hash, K, H } }
        }
        default:
          throw unexpectedMessage(payload[0], "nothing (exchange already finished)")
      }
    }
  }
}

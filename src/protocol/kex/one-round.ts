import { Msg } from "../wire/messages.js"
import type { SshReader } from "../wire/reader.js"
import { message, SshWriter } from "../wire/writer.js"
import { kexFailure, readMessage, unexpectedMessage } from "./errors.js"
import { exchangeHash } from "./exchange-hash.js"
import type { ClientKex, ExchangeInputs, HashName, RandomBytes, ServerHostKey, ServerKex } from "./types.js"

/**
 * A method with one INIT (30) and one REPLY (31): fixed-group DH (RFC 4253 §8), ECDH
 * (RFC 5656 §4), curve25519 (RFC 8731) and the ML-KEM hybrid. Each differs only in how
 * the two public values are made, encoded and combined into K.
 */
export interface OneRoundScheme {
  readonly hash: HashName
  /** How both public values appear in the messages and in the exchange hash. */
  readonly encoding: "mpint" | "string"
  /** The client's value, and how it reaches K (encoded) from the server's value. */
  initiate(random: RandomBytes): { readonly value: Uint8Array; complete(serverValue: Uint8Array): Uint8Array }
  /** The server's value and K (encoded) for the client's value. */
  respond(clientValue: Uint8Array, random: RandomBytes): { readonly value: Uint8Array; readonly K: Uint8Array }
}

/** mpint values travel as unsigned big-endian magnitudes. */
function writeValue(w: SshWriter, encoding: OneRoundScheme["encoding"], value: Uint8Array): void {
  if (encoding === "string") w.string(value)
  else w.mpintFromUnsigned(value)
}

function readValue(r: SshReader, encoding: OneRoundScheme["encoding"]): Uint8Array {
  const bytes = r.string()
  if (encoding === "string") return bytes
  if (bytes.length > 0 && bytes[0]! & 0x80) throw kexFailure("negative Diffie-Hellman public value")
  let i = 0
  while (i < bytes.length && bytes[i] === 0) i++
  return bytes.subarray(i)
}

function hashFields(encoding: OneRoundScheme["encoding"], clientValue: Uint8Array, serverValue: Uint8Array): Uint8Array {
  const w = new SshWriter(clientValue.length + serverValue.length + 16)
  writeValue(w, encoding, clientValue)
  writeValue(w, encoding, serverValue)
  return w.finish()
}

export function oneRoundClient(scheme: OneRoundScheme, inputs: ExchangeInputs, random: RandomBytes): ClientKex {
  let pending: ReturnType<OneRoundScheme["initiate"]> | undefined
  let done = false
  return {
    start() {
      if (pending || done) throw kexFailure("key exchange already started")
      pending = scheme.initiate(random)
      const value = pending.value
      return [message((w) => writeValue(w.byte(Msg.KEX_ECDH_INIT), scheme.encoding, value), value.length + 16)]
    },
    receive(payload) {
      if (!pending) throw unexpectedMessage(payload[0], "nothing (exchange not started or already finished)")
      const reply = readMessage(payload, Msg.KEX_ECDH_REPLY, "key exchange reply (31)", (r) => ({
        hostKey: r.string(),
        value: readValue(r, scheme.encoding),
        signature: r.string()
      }))
      const K = pending.complete(reply.value)
      const H = exchangeHash(scheme.hash, inputs, reply.hostKey, hashFields(scheme.encoding, pending.value, reply.value), K)
      pending = undefined
      done = true
      return {
        send: [],
        result: { hash: scheme.hash, K, H, hostKey: reply.hostKey.slice(), signature: reply.signature.slice() }
      }
    }
  }
}

export function oneRoundServer(scheme: OneRoundScheme, inputs: ExchangeInputs, hostKey: ServerHostKey, random: RandomBytes): ServerKex {
  let done = false
  return {
    receive(payload) {
      if (done) throw unexpectedMessage(payload[0], "nothing (exchange already finished)")
      const clientValue = readMessage(payload, Msg.KEX_ECDH_INIT, "key exchange init (30)", (r) => readValue(r, scheme.encoding))
      const { value, K } = scheme.respond(clientValue, random)
      const H = exchangeHash(scheme.hash, inputs, hostKey.blob, hashFields(scheme.encoding, clientValue, value), K)
      const signature = hostKey.sign(H)
      done = true
      const reply = message((w) => {
        w.byte(Msg.KEX_ECDH_REPLY).string(hostKey.blob)
        writeValue(w, scheme.encoding, value)
        w.string(signature)
      }, hostKey.blob.length + value.length + signature.length + 32)
      return { send: [reply], result: { hash: scheme.hash, K, H } }
    }
  }
}

import { DisconnectReason, ProtocolError, WireError } from "../wire/errors.js"
import { Msg } from "../wire/messages.js"
import { SshReader } from "../wire/reader.js"
import { SshWriter } from "../wire/writer.js"

/** SSH_MSG_KEXINIT (RFC 4253 §7.1). */
export interface KexInit {
  readonly cookie: Uint8Array
  readonly kex: ReadonlyArray<string>
  readonly hostKey: ReadonlyArray<string>
  readonly cipherC2S: ReadonlyArray<string>
  readonly cipherS2C: ReadonlyArray<string>
  readonly macC2S: ReadonlyArray<string>
  readonly macS2C: ReadonlyArray<string>
  readonly compressionC2S: ReadonlyArray<string>
  readonly compressionS2C: ReadonlyArray<string>
  readonly languagesC2S: ReadonlyArray<string>
  readonly languagesS2C: ReadonlyArray<string>
  readonly firstKexPacketFollows: boolean
}

/** RFC 8308 §2.1: a client or server that accepts SSH_MSG_EXT_INFO. */
export const EXT_INFO_C = "ext-info-c"
export const EXT_INFO_S = "ext-info-s"
/** OpenSSH strict kex (PROTOCOL §1.9), the Terrapin countermeasure. */
export const KEX_STRICT_C = "kex-strict-c-v00@openssh.com"
export const KEX_STRICT_S = "kex-strict-s-v00@openssh.com"

/** Names that ride in the kex list as signals and must never be chosen as a method. */
export const PSEUDO_KEX_ALGORITHMS: ReadonlySet<string> = new Set([EXT_INFO_C, EXT_INFO_S, KEX_STRICT_C, KEX_STRICT_S])

const COOKIE_LENGTH = 16

/** The full KEXINIT payload, starting with byte 20. */
export function encodeKexInit(k: KexInit): Uint8Array {
  if (k.cookie.length !== COOKIE_LENGTH) throw new WireError(`KEXINIT cookie must be ${COOKIE_LENGTH} bytes, got ${k.cookie.length}`)
  const w = new SshWriter(512)
  w.byte(Msg.KEXINIT).raw(k.cookie)
  for (const field of LIST_FIELDS) w.nameList(k[field])
  w.bool(k.firstKexPacketFollows)
  w.uint32(0)
  return w.finish()
}

/** Parses a KEXINIT payload; a malformed one raises WireError. */
export function parseKexInit(payload: Uint8Array): KexInit {
  const r = new SshReader(payload)
  const type = r.byte()
  if (type !== Msg.KEXINIT) throw new ProtocolError("protocol", `expected KEXINIT (20), got message ${type}`)
  const cookie = r.bytes(COOKIE_LENGTH).slice()
  const lists = {} as Record<ListField, ReadonlyArray<string>>
  for (const field of LIST_FIELDS) lists[field] = readNames(r, field)
  const firstKexPacketFollows = r.bool()
  r.uint32() // reserved for future extension
  r.end()
  return { cookie, ...lists, firstKexPacketFollows }
}

const LIST_FIELDS = [
  "kex",
  "hostKey",
  "cipherC2S",
  "cipherS2C",
  "macC2S",
  "macS2C",
  "compressionC2S",
  "compressionS2C",
  "languagesC2S",
  "languagesS2C"
] as const
type ListField = (typeof LIST_FIELDS)[number]

/** RFC 4251 §5: names are non-empty printable US-ASCII without commas. */
function readNames(r: SshReader, field: string): ReadonlyArray<string> {
  const names = r.nameList()
  for (const name of names) {
    if (name.length === 0) throw new WireError(`KEXINIT ${field} name-list has an empty name`)
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i)
      if (c <= 0x20 || c >= 0x7f) throw new WireError(`KEXINIT ${field} name-list has a non-printable character`)
    }
  }
  return names
}

/** The algorithms both sides settled on; a MAC is "" when the cipher is AEAD. */
export interface Negotiated {
  readonly kex: string
  readonly hostKey: string
  readonly cipherC2S: string
  readonly cipherS2C: string
  readonly macC2S: string
  readonly macS2C: string
  readonly compressionC2S: string
  readonly compressionS2C: string
}

const CATEGORY_LABEL = {
  kex: "key exchange",
  hostKey: "host key",
  cipherC2S: "cipher (client to server)",
  cipherS2C: "cipher (server to client)",
  macC2S: "MAC (client to server)",
  macS2C: "MAC (server to client)",
  compressionC2S: "compression (client to server)",
  compressionS2C: "compression (server to client)"
} as const

type Category = keyof typeof CATEGORY_LABEL

/**
 * Chooses each algorithm by RFC 4253 §7.1: the first one on the client's list that the
 * server also offers. Pseudo-algorithms are never chosen; no MAC is needed with an AEAD cipher.
 */
export function negotiate(client: KexInit, server: KexInit, isAead: (cipher: string) => boolean): Negotiated {
  const pick = (category: Category): string => {
    const offered = new Set(server[category])
    for (const name of client[category]) {
      if (offered.has(name) && !(category === "kex" && PSEUDO_KEX_ALGORITHMS.has(name))) return name
    }
    throw new ProtocolError(
      "no-common-algorithm",
      `no common ${CATEGORY_LABEL[category]} algorithm; client offered [${client[category].join(", ")}], server offered [${server[category].join(", ")}]`,
      DisconnectReason.KEY_EXCHANGE_FAILED,
      { category, client: [...client[category]], server: [...server[category]] }
    )
  }
  const kex = pick("kex")
  const hostKey = pick("hostKey")
  const cipherC2S = pick("cipherC2S")
  const cipherS2C = pick("cipherS2C")
  const macC2S = isAead(cipherC2S) ? "" : pick("macC2S")
  const macS2C = isAead(cipherS2C) ? "" : pick("macS2C")
  const compressionC2S = pick("compressionC2S")
  const compressionS2C = pick("compressionS2C")
  return { kex, hostKey, cipherC2S, cipherS2C, macC2S, macS2C, compressionC2S, compressionS2C }
}

/**
 * Whether a guessed first kex packet must be ignored (RFC 4253 §7): the guess holds only
 * when both sides put the same kex method and the same host key algorithm first.
 */
export function guessIsWrong(client: KexInit, server: KexInit): boolean {
  return client.kex[0] !== server.kex[0] || client.hostKey[0] !== server.hostKey[0]
}

import { randomBytes as nodeRandomBytes } from "node:crypto"
import { CIPHERS } from "../crypto/ciphers.js"
import { MACS } from "../crypto/macs.js"
import { deriveKey } from "../kex/derive.js"
import { encodeKexInit, guessIsWrong, negotiate, parseKexInit } from "../kex/kexinit.js"
import type { KexInit, Negotiated } from "../kex/kexinit.js"
import { createClientKex, createServerKex } from "../kex/methods.js"
import type { ClientKex, ExchangeInputs, HashName, ServerKex } from "../kex/methods.js"
import { verifySignature } from "../keys/publicKey.js"
import { DisconnectReason, ProtocolError, WireError } from "../wire/errors.js"
import { Msg } from "../wire/messages.js"
import { SshReader } from "../wire/reader.js"
import { concatBytes, message } from "../wire/writer.js"
import { IdentificationReader } from "./identification.js"
import { PacketDecoder, PacketEncoder } from "./packet.js"
import type { DirectionKeys } from "./packet.js"

/** Algorithm preference lists, one per negotiated category. */
export interface AlgorithmLists {
  readonly kex: ReadonlyArray<string>
  readonly hostKey: ReadonlyArray<string>
  readonly cipher: ReadonlyArray<string>
  readonly mac: ReadonlyArray<string>
  readonly compression: ReadonlyArray<string>
}

/** A host key the server can prove possession of, under each of its signature algorithms. */
export interface HostKeySigner {
  readonly algorithms: ReadonlyArray<string>
  readonly blob: Uint8Array
  sign(algorithm: string, data: Uint8Array): Uint8Array
}

export interface TransportConfig {
  readonly role: "client" | "server"
  /** Software version sent in the identification line: `SSH-2.0-${software}`. */
  readonly software: string
  readonly algorithms: AlgorithmLists
  /** Server only: the host keys to offer. */
  readonly hostKeys?: ReadonlyArray<HostKeySigner>
  /** Server only: lines sent before the identification line. */
  readonly greeting?: string
  /** Server only: extensions sent in SSH_MSG_EXT_INFO when the client asks (`server-sig-algs`, ...). */
  readonly extInfo?: ReadonlyArray<readonly [string, Uint8Array]>
  /** Rekey after this many bytes in either direction (OpenSSH's default: 1 GiB). */
  readonly rekeyBytes?: number
  /** Rekey after this many milliseconds (OpenSSH's default: one hour). */
  readonly rekeyIntervalMs?: number
  readonly maxPacketLength?: number
  readonly randomBytes?: (n: number) => Uint8Array
  readonly gex?: { readonly min: number; readonly preferred: number; readonly max: number }
}

export interface KexSummary extends Negotiated {
  /** True for the first key exchange of the connection. */
  readonly initial: boolean
  readonly strict: boolean
}

export type TransportEvent =
  | { readonly _tag: "Identification"; readonly version: string; readonly prelude: ReadonlyArray<string> }
  /** Client only: the server proved it holds this key. Answer with `acceptHostKey(ok)`; nothing proceeds until then. */
  | { readonly _tag: "HostKey"; readonly algorithm: string; readonly key: Uint8Array }
  | { readonly _tag: "KexDone"; readonly summary: KexSummary }
  | { readonly _tag: "ExtInfo"; readonly extensions: ReadonlyMap<string, Uint8Array> }
  | { readonly _tag: "Debug"; readonly message: string; readonly alwaysDisplay: boolean }
  /** A service-layer message (service request/accept, auth, connection). */
  | { readonly _tag: "Payload"; readonly payload: Uint8Array; readonly sequence: number }
  /** The connection is over: the peer said DISCONNECT, or we found a protocol error (sent to the peer), or we disconnected. */
  | { readonly _tag: "Closed"; readonly error?: ProtocolError; readonly byPeer: boolean }

const KEX_STRICT_CLIENT = "kex-strict-c-v00@openssh.com"
const KEX_STRICT_SERVER = "kex-strict-s-v00@openssh.com"
const EXT_INFO_CLIENT = "ext-info-c"
const EXT_INFO_SERVER = "ext-info-s"

const GiB = 1024 * 1024 * 1024

const defaultRandomBytes = (n: number): Uint8Array => nodeRandomBytes(n)

type KexState =
  | { readonly phase: "idle" }
  /** We sent our KEXINIT and wait for the peer's. */
  | { readonly phase: "sent-init"; readonly ours: Uint8Array }
  | {
      readonly phase: "exchanging"
      readonly ours: Uint8Array
      readonly negotiated: Negotiated
      readonly machine: { readonly role: "client"; readonly kex: ClientKex } | { readonly role: "server"; readonly kex: ServerKex }
      /** The peer's guessed first kex packet that must be ignored. */
      ignoreNext: boolean
      keys?: { readonly send: DirectionKeys; readonly receive: DirectionKeys }
      awaitingHostKey?: boolean
      newKeysSent: boolean
      newKeysReceived: boolean
    }

/**
 * The SSH transport layer (RFC 4253) as a sans-IO state machine: identification, binary
 * packets, key exchange in either role, strict kex, ext-info and rekeying.
 *
 * Feed it with `receive(bytes)`, drain `poll()` for events and `pollTransmit()` for bytes
 * to write. Service payloads go out through `send(payload)`; during a key exchange they
 * wait in a queue, as RFC 4253 §7.1 requires.
 */
export class Transport {
  private readonly encoder: PacketEncoder
  private readonly decoder: PacketDecoder
  /** Until the peer's identification line is in; dropped then. */
  private identification: IdentificationReader | undefined = new IdentificationReader()
  private readonly random: (n: number) => Uint8Array
  private readonly events: TransportEvent[] = []
  private outgoing: Uint8Array[] = []
  private outgoingBytes = 0
  /** Service payloads held back while a key exchange is in progress. */
  private held: Uint8Array[] = []

  private ourVersion: string
  private peerVersion: string | undefined
  private kex: KexState = { phase: "idle" }
  private kexCount = 0
  private strict = false
  private peerWantsExtInfo = false
  private sessionIdValue: Uint8Array | undefined
  private negotiatedValue: Negotiated | undefined
  private peerKexInitValue: KexInit | undefined
  /** When the last key exchange finished; stamped at the first `handleTimeout` after it. */
  private lastKexAt: number | undefined
  private closed = false
  private paused = false
  private pendingCompression: { send?: "zlib@openssh.com"; receive?: "zlib@openssh.com" } = {}

  constructor(private readonly config: TransportConfig) {
    this.random = config.randomBytes ?? defaultRandomBytes
    // without an injected source the encoder draws padding from its own pooled buffer
    this.encoder = new PacketEncoder(config.randomBytes ? { randomBytes: config.randomBytes } : {})
    this.decoder = new PacketDecoder(config.maxPacketLength === undefined ? {} : { maxPacketLength: config.maxPacketLength })
    this.ourVersion = `SSH-2.0-${config.software}`
    const greeting = config.role === "server" && config.greeting ? normaliseGreeting(config.greeting) : ""
    this.queueRaw(new TextEncoder().encode(`${greeting}${this.ourVersion}\r\n`))
    // Both sides may send KEXINIT right after the identification line (RFC 4253 §7.1).
    this.startKex()
  }

  // ---- observers -------------------------------------------------------------------------

  get isClosed(): boolean {
    return this.closed
  }
  /** The exchange hash of the first key exchange (RFC 4253 §7.2). */
  get sessionId(): Uint8Array | undefined {
    return this.sessionIdValue
  }
  get negotiated(): Negotiated | undefined {
    return this.negotiatedValue
  }
  /** The peer's KEXINIT (its algorithm lists) while a key exchange is running; dropped after it. */
  get peerKexInit(): KexInit | undefined {
    return this.peerKexInitValue
  }
  get peerIdentification(): string | undefined {
    return this.peerVersion
  }
  get localIdentification(): string {
    return this.ourVersion
  }
  get kexInProgress(): boolean {
    return this.kex.phase !== "idle"
  }

  // ---- sans-IO interface -----------------------------------------------------------------

  /**
   * Bytes read from the peer; `given` when the caller will not reuse them (see
   * PacketDecoder.push). Errors are not thrown: they close the transport and surface as a
   * `Closed` event.
   */
  receive(bytes: Uint8Array, given = false): void {
    if (this.closed) return
    try {
      if (this.peerVersion === undefined) {
        const id = this.identification!.push(bytes)
        if (id === undefined) return
        this.identification = undefined
        this.peerVersion = id.version
        this.events.push({ _tag: "Identification", version: id.version, prelude: id.prelude })
        bytes = id.rest
      }
      if (bytes.length > 0) this.decoder.push(bytes, given)
      this.process()
    } catch (e) {
      this.abort(e)
    } finally {
      // the caller may reuse `bytes` once we return
      this.decoder.detach()
    }
  }

  poll(): TransportEvent | undefined {
    return this.events.shift()
  }

  /** All bytes ready to be written, as one buffer. */
  pollTransmit(): Uint8Array | undefined {
    const parts = this.pollTransmitParts()
    return parts.length === 0 ? undefined : parts.length === 1 ? parts[0] : concatBytes(...parts)
  }

  /** All bytes ready to be written, packet by packet, for one gathered write (no copy). */
  pollTransmitParts(): ReadonlyArray<Uint8Array> {
    const parts = this.outgoing
    this.outgoing = []
    this.outgoingBytes = 0
    return parts
  }

  /** Bytes queued and not yet taken by `pollTransmit`. */
  get pendingTransmit(): number {
    return this.outgoingBytes
  }

  /** The next moment (ms) at which `handleTimeout` has work to do: the time-based rekey. */
  pollTimeout(): number | undefined {
    if (this.closed || this.kexCount === 0) return undefined
    if (this.lastKexAt === undefined) return 0
    return this.lastKexAt + (this.config.rekeyIntervalMs ?? 3600_000)
  }

  /** Tells the machine what time it is; starts a rekey when the interval has passed. */
  handleTimeout(now: number): void {
    if (this.closed || this.kexCount === 0) return
    if (this.lastKexAt === undefined) {
      this.lastKexAt = now
      return
    }
    if (now >= this.lastKexAt + (this.config.rekeyIntervalMs ?? 3600_000)) this.rekey()
  }

  /** Sends a service-layer payload (message number ≥ 5, not a kex message). */
  send(payload: Uint8Array): void {
    if (this.closed) return
    if (this.kex.phase !== "idle" && !this.newKeysSentInCurrentKex()) {
      this.held.push(payload)
      return
    }
    this.writePacket(payload)
    this.checkRekeyVolume()
  }

  /**
   * Sends a payload given in two parts (a data message's header and its bytes) with no copy
   * of the bytes on the default cipher. Held payloads are joined: the caller's buffer may
   * change once we return.
   */
  sendGathered(head: Uint8Array, data: Uint8Array): void {
    if (this.closed) return
    if (this.kex.phase !== "idle" && !this.newKeysSentInCurrentKex()) {
      this.held.push(concatBytes(head, data))
      return
    }
    for (const part of this.encoder.encodeGathered(head, data)) this.queueRaw(part)
    this.checkRekeyVolume()
  }

  /** Client: the verdict on the host key announced by the `HostKey` event. */
  acceptHostKey(ok: boolean): void {
    const k = this.kex
    if (k.phase !== "exchanging" || !k.awaitingHostKey) return
    k.awaitingHostKey = false
    if (!ok) {
      this.abort(new ProtocolError("host-key-rejected", "host key rejected", DisconnectReason.HOST_KEY_NOT_VERIFIABLE))
      return
    }
    this.sendNewKeys(k)
    this.paused = false
    try {
      this.process()
    } catch (e) {
      this.abort(e)
    }
  }

  /** Starts a key re-exchange (no effect while one is running). */
  rekey(): void {
    if (this.closed || this.kex.phase !== "idle" || this.kexCount === 0) return
    this.startKex()
  }

  /**
   * Authentication has succeeded: delayed compression (`zlib@openssh.com`) starts now.
   * The client calls this on USERAUTH_SUCCESS received, the server right after sending it.
   */
  authenticated(): void {
    if (this.pendingCompression.send) this.encoder.startCompression(this.pendingCompression.send)
    if (this.pendingCompression.receive) this.decoder.startCompression(this.pendingCompression.receive)
    this.pendingCompression = {}
  }

  /** Sends SSH_MSG_UNIMPLEMENTED for a payload no layer understood. */
  unimplemented(sequence: number): void {
    this.send(message((w) => w.byte(Msg.UNIMPLEMENTED).uint32(sequence)))
  }

  /** Sends DISCONNECT and closes. */
  disconnect(reason: number = DisconnectReason.BY_APPLICATION, description = ""): void {
    if (this.closed) return
    this.writePacket(disconnectPayload(reason, description))
    this.closed = true
    this.events.push({ _tag: "Closed", byPeer: false })
  }

  /** The socket ended or failed under us. */
  connectionLost(description = "connection lost"): void {
    if (this.closed) return
    this.closed = true
    this.events.push({
      _tag: "Closed",
      byPeer: true,
      error: new ProtocolError("connection-lost", description, DisconnectReason.CONNECTION_LOST)
    })
  }

  // ---- internals -------------------------------------------------------------------------

  private process(): void {
    while (!this.closed && !this.paused) {
      const sequence = this.decoder.sequence
      const payload = this.decoder.next()
      if (payload === undefined) return
      this.dispatch(payload, sequence)
      this.checkRekeyVolume()
    }
  }

  private dispatch(payload: Uint8Array, sequence: number): void {
    if (payload.length === 0) throw new ProtocolError("protocol", "empty packet payload")
    const type = payload[0]!
    const inInitialKex = this.kexCount === 0
    // Strict kex (Terrapin countermeasure): during the first exchange only kex messages are allowed.
    if (inInitialKex && this.strict && !isKexMessage(type)) {
      throw new ProtocolError("protocol", `message ${type} during the initial key exchange under strict kex`)
    }
    switch (type) {
      case Msg.DISCONNECT:
        return this.onDisconnect(payload)
      case Msg.IGNORE:
        return
      case Msg.UNIMPLEMENTED:
        if (inInitialKex) throw new ProtocolError("kex", "peer rejected a key exchange message", DisconnectReason.KEY_EXCHANGE_FAILED)
        return
      case Msg.DEBUG: {
        const r = new SshReader(payload, 1)
        const alwaysDisplay = r.bool()
        this.events.push({ _tag: "Debug", alwaysDisplay, message: r.utf8() })
        return
      }
      case Msg.KEXINIT:
        return this.onKexInit(payload, sequence)
      case Msg.NEWKEYS:
        return this.onNewKeys()
      case Msg.EXT_INFO:
        return this.onExtInfo(payload)
    }
    if (type >= 30 && type <= 49) return this.onKexMethodMessage(payload)
    if (inInitialKex) throw new ProtocolError("protocol", `message ${type} before the first key exchange completed`)
    this.events.push({ _tag: "Payload", payload, sequence })
  }

  private onDisconnect(payload: Uint8Array): void {
    const r = new SshReader(payload, 1)
    const code = r.uint32()
    let description = ""
    try {
      description = r.utf8()
    } catch {
      // a malformed description does not change the fact that the peer is gone
    }
    this.closed = true
    this.events.push({
      _tag: "Closed",
      byPeer: true,
      error: new ProtocolError("disconnected", description || `peer disconnected (code ${code})`, code as DisconnectReason, {
        code,
        description
      })
    })
  }

  private startKex(): void {
    const cfg = this.config
    const first = this.kexCount === 0
    const kexNames = [...cfg.algorithms.kex]
    if (first) {
      if (cfg.role === "client") kexNames.push(EXT_INFO_CLIENT, KEX_STRICT_CLIENT)
      else kexNames.push(EXT_INFO_SERVER, KEX_STRICT_SERVER)
    }
    const hostKey = cfg.role === "server" ? (cfg.hostKeys ?? []).flatMap((k) => k.algorithms) : cfg.algorithms.hostKey
    const init: KexInit = {
      cookie: this.random(16),
      kex: kexNames,
      hostKey: cfg.role === "server" ? hostKey.filter((a) => cfg.algorithms.hostKey.includes(a)) : hostKey,
      cipherC2S: cfg.algorithms.cipher,
      cipherS2C: cfg.algorithms.cipher,
      macC2S: cfg.algorithms.mac,
      macS2C: cfg.algorithms.mac,
      compressionC2S: cfg.algorithms.compression,
      compressionS2C: cfg.algorithms.compression,
      languagesC2S: [],
      languagesS2C: [],
      firstKexPacketFollows: false
    }
    const ours = encodeKexInit(init)
    this.writePacket(ours)
    this.kex = { phase: "sent-init", ours }
  }

  private onKexInit(payload: Uint8Array, sequence: number): void {
    if (this.kex.phase === "exchanging") throw new ProtocolError("protocol", "KEXINIT during a key exchange")
    if (this.kex.phase === "idle") this.startKex()
    const ours = (this.kex as { ours: Uint8Array }).ours
    const peer = parseKexInit(payload)
    this.peerKexInitValue = peer
    const first = this.kexCount === 0
    const isClient = this.config.role === "client"
    const ourInit = parseKexInit(ours)
    const clientInit = isClient ? ourInit : peer
    const serverInit = isClient ? peer : ourInit
    if (first) {
      this.strict = clientInit.kex.includes(KEX_STRICT_CLIENT) && serverInit.kex.includes(KEX_STRICT_SERVER)
      if (this.strict && sequence !== 0) {
        throw new ProtocolError("protocol", "strict kex: KEXINIT was not the first packet (possible Terrapin attack)")
      }
      if (!isClient) this.peerWantsExtInfo = peer.kex.includes(EXT_INFO_CLIENT)
    }
    const negotiated = negotiate(clientInit, serverInit, (c) => CIPHERS[c]?.aead === true)
    const inputs: ExchangeInputs = {
      clientVersion: isClient ? this.ourVersion : this.peerVersion!,
      serverVersion: isClient ? this.peerVersion! : this.ourVersion,
      clientKexInit: isClient ? ours : payload,
      serverKexInit: isClient ? payload : ours
    }
    const ignoreNext = peer.firstKexPacketFollows && guessIsWrong(clientInit, serverInit)
    const options = { randomBytes: this.random, ...(this.config.gex ? { gex: this.config.gex } : {}) }
    if (isClient) {
      const kex = createClientKex(negotiated.kex, inputs, options)
      this.kex = { phase: "exchanging", ours, negotiated, machine: { role: "client", kex }, ignoreNext, newKeysSent: false, newKeysReceived: false }
      for (const p of kex.start()) this.writePacket(p)
    } else {
      const signer = (this.config.hostKeys ?? []).find((k) => k.algorithms.includes(negotiated.hostKey))
      if (!signer) throw new ProtocolError("kex", `no host key for ${negotiated.hostKey}`, DisconnectReason.KEY_EXCHANGE_FAILED)
      const kex = createServerKex(
        negotiated.kex,
        inputs,
        { blob: signer.blob, sign: (data) => signer.sign(negotiated.hostKey, data) },
        options
      )
      this.kex = { phase: "exchanging", ours, negotiated, machine: { role: "server", kex }, ignoreNext, newKeysSent: false, newKeysReceived: false }
    }
  }

  private onKexMethodMessage(payload: Uint8Array): void {
    const k = this.kex
    if (k.phase !== "exchanging") throw new ProtocolError("protocol", `key exchange message ${payload[0]} outside a key exchange`)
    if (k.ignoreNext) {
      k.ignoreNext = false
      return
    }
    if (k.keys) throw new ProtocolError("protocol", `unexpected key exchange message ${payload[0]}`)
    if (k.machine.role === "client") {
      const step = k.machine.kex.receive(payload)
      for (const p of step.send) this.writePacket(p)
      if (!step.result) return
      const r = step.result
      if (!verifySignature(r.hostKey, r.signature, r.H, k.negotiated.hostKey)) {
        throw new ProtocolError(
          "kex",
          `the server's ${k.negotiated.hostKey} signature of the exchange hash does not verify`,
          DisconnectReason.KEY_EXCHANGE_FAILED
        )
      }
      k.keys = this.deriveKeys(k.negotiated, r.hash, r.K, r.H)
      k.awaitingHostKey = true
      this.paused = true
      this.events.push({ _tag: "HostKey", algorithm: k.negotiated.hostKey, key: r.hostKey })
    } else {
      const step = k.machine.kex.receive(payload)
      for (const p of step.send) this.writePacket(p)
      if (!step.result) return
      const r = step.result
      k.keys = this.deriveKeys(k.negotiated, r.hash, r.K, r.H)
      this.sendNewKeys(k)
    }
  }

  private deriveKeys(n: Negotiated, hash: HashName, K: Uint8Array, H: Uint8Array) {
    if (this.sessionIdValue === undefined) this.sessionIdValue = H
    const sid = this.sessionIdValue
    const direction = (cipher: string, mac: string, ivLetter: "A" | "B", keyLetter: "C" | "D", macLetter: "E" | "F"): DirectionKeys => {
      const spec = CIPHERS[cipher]
      if (!spec) throw new ProtocolError("kex", `unsupported cipher ${cipher}`, DisconnectReason.KEY_EXCHANGE_FAILED)
      const macLength = spec.aead ? 0 : (MACS[mac]?.keyLength ?? 0)
      return {
        cipher,
        mac,
        iv: deriveKey(hash, K, H, sid, ivLetter, spec.ivLength),
        encKey: deriveKey(hash, K, H, sid, keyLetter, spec.keyLength),
        macKey: deriveKey(hash, K, H, sid, macLetter, macLength)
      }
    }
    const c2s = direction(n.cipherC2S, n.macC2S, "A", "C", "E")
    const s2c = direction(n.cipherS2C, n.macS2C, "B", "D", "F")
    return this.config.role === "client" ? { send: c2s, receive: s2c } : { send: s2c, receive: c2s }
  }

  private sendNewKeys(k: Extract<KexState, { phase: "exchanging" }>): void {
    this.writePacket(Uint8Array.of(Msg.NEWKEYS))
    this.encoder.setKeys(k.keys!.send)
    if (this.strict) this.encoder.resetSequence()
    k.newKeysSent = true
    const compression = this.config.role === "client" ? k.negotiated.compressionC2S : k.negotiated.compressionS2C
    this.applyCompression("send", compression)
    // Server: the first NEWKEYS is the moment to tell an ext-info-c client our extensions.
    if (this.config.role === "server" && this.kexCount === 0 && this.peerWantsExtInfo && this.config.extInfo?.length) {
      this.writePacket(extInfoPayload(this.config.extInfo))
    }
    this.flushHeld()
    this.maybeFinishKex(k)
  }

  private onNewKeys(): void {
    const k = this.kex
    if (k.phase !== "exchanging" || !k.keys || k.newKeysReceived) throw new ProtocolError("protocol", "unexpected NEWKEYS")
    this.decoder.setKeys(k.keys.receive)
    if (this.strict) this.decoder.resetSequence()
    k.newKeysReceived = true
    const compression = this.config.role === "client" ? k.negotiated.compressionS2C : k.negotiated.compressionC2S
    this.applyCompression("receive", compression)
    this.maybeFinishKex(k)
  }

  private applyCompression(direction: "send" | "receive", method: string): void {
    if (method === "zlib") {
      if (direction === "send") this.encoder.startCompression("zlib")
      else this.decoder.startCompression("zlib")
    } else if (method === "zlib@openssh.com") {
      // delayed compression starts after authentication; on a rekey after auth it is already running
      if (this.kexCount === 0) this.pendingCompression[direction] = "zlib@openssh.com"
    }
  }

  private maybeFinishKex(k: Extract<KexState, { phase: "exchanging" }>): void {
    if (!k.newKeysSent || !k.newKeysReceived) return
    const initial = this.kexCount === 0
    this.kexCount++
    this.lastKexAt = undefined
    this.peerKexInitValue = undefined
    this.negotiatedValue = k.negotiated
    this.kex = { phase: "idle" }
    this.events.push({ _tag: "KexDone", summary: { ...k.negotiated, initial, strict: this.strict } })
    this.flushHeld()
  }

  private onExtInfo(payload: Uint8Array): void {
    const r = new SshReader(payload, 1)
    const count = r.uint32()
    if (count > 64) throw new ProtocolError("protocol", `EXT_INFO with ${count} extensions`)
    const extensions = new Map<string, Uint8Array>()
    for (let i = 0; i < count; i++) extensions.set(r.ascii(), r.string())
    this.events.push({ _tag: "ExtInfo", extensions })
  }

  private newKeysSentInCurrentKex(): boolean {
    return this.kex.phase === "exchanging" && this.kex.newKeysSent
  }

  private flushHeld(): void {
    if (this.held.length === 0) return
    if (this.kex.phase !== "idle" && !this.newKeysSentInCurrentKex()) return
    const held = this.held
    this.held = []
    for (const p of held) this.writePacket(p)
  }

  private checkRekeyVolume(): void {
    if (this.kex.phase !== "idle" || this.kexCount === 0 || this.closed) return
    const limit = this.config.rekeyBytes ?? GiB
    if (this.encoder.bytesSinceKeys >= limit || this.decoder.bytesSinceKeys >= limit) this.startKex()
    // 2^31 packets under one key is far beyond what any cipher here should see (RFC 4344 §3.1)
    else if (this.encoder.packetsSinceKeys >= 0x80000000 || this.decoder.packetsSinceKeys >= 0x80000000) this.startKex()
  }

  private writePacket(payload: Uint8Array): void {
    this.queueRaw(this.encoder.encode(payload))
  }

  private queueRaw(bytes: Uint8Array): void {
    this.outgoing.push(bytes)
    this.outgoingBytes += bytes.length
  }

  /**
   * Ends the connection because of `e`: a ProtocolError keeps its DISCONNECT reason, a
   * malformed message is a protocol error. The peer is told why; a `Closed` event follows.
   */
  abort(e: unknown): void {
    if (this.closed) return
    const error =
      e instanceof ProtocolError
        ? e
        : e instanceof WireError
          ? new ProtocolError("protocol", `malformed packet: ${e.message}`)
          : new ProtocolError("protocol", `internal error: ${e instanceof Error ? e.message : String(e)}`)
    try {
      if (this.peerVersion !== undefined || this.config.role === "server") {
        this.writePacket(disconnectPayload(error.reason, error.message))
      }
    } catch {
      // the encoder itself failed: nothing more can be sent
    }
    this.closed = true
    this.events.push({ _tag: "Closed", byPeer: false, error })
  }
}

function isKexMessage(type: number): boolean {
  return type === Msg.KEXINIT || type === Msg.NEWKEYS || (type >= 30 && type <= 49) || type === Msg.DISCONNECT
}

function disconnectPayload(reason: number, description: string): Uint8Array {
  return message((w) => w.byte(Msg.DISCONNECT).uint32(reason).string(description).string(""))
}

function extInfoPayload(extensions: ReadonlyArray<readonly [string, Uint8Array]>): Uint8Array {
  return message((w) => {
    w.byte(Msg.EXT_INFO).uint32(extensions.length)
    for (const [name, value] of extensions) w.string(name).string(value)
  })
}

function normaliseGreeting(greeting: string): string {
  const text = greeting.replace(/\r?\n/g, "\r\n")
  return text.endsWith("\r\n") ? text : `${text}\r\n`
}

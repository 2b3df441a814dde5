/**
 * Codecs for the connection-protocol messages (RFC 4254, message numbers 80–100).
 * CHANNEL_DATA and CHANNEL_EXTENDED_DATA have hand-written fast paths; every other
 * message goes through SshReader / SshWriter.
 */
import { WireError } from "../wire/errors.js"
import { Msg } from "../wire/messages.js"
import { SshReader } from "../wire/reader.js"
import { concatBytes, message } from "../wire/writer.js"

export type ConnectionMessage =
  | { readonly _tag: "GlobalRequest"; readonly name: string; readonly wantReply: boolean; readonly data: Uint8Array }
  | { readonly _tag: "RequestSuccess"; readonly data: Uint8Array }
  | { readonly _tag: "RequestFailure" }
  | {
      readonly _tag: "ChannelOpen"
      readonly channelType: string
      readonly sender: number
      readonly window: number
      readonly maxPacket: number
      readonly data: Uint8Array
    }
  | {
      readonly _tag: "ChannelOpenConfirmation"
      readonly recipient: number
      readonly sender: number
      readonly window: number
      readonly maxPacket: number
      readonly data: Uint8Array
    }
  | {
      readonly _tag: "ChannelOpenFailure"
      readonly recipient: number
      readonly reason: number
      readonly description: string
      readonly language: string
    }
  | { readonly _tag: "ChannelWindowAdjust"; readonly recipient: number; readonly bytes: number }
  | ChannelDataMessage
  | ChannelExtendedDataMessage
  | { readonly _tag: "ChannelEof"; readonly recipient: number }
  | { readonly _tag: "ChannelClose"; readonly recipient: number }
  | {
      readonly _tag: "ChannelRequest"
      readonly recipient: number
      readonly request: string
      readonly wantReply: boolean
      readonly data: Uint8Array
    }
  | { readonly _tag: "ChannelSuccess"; readonly recipient: number }
  | { readonly _tag: "ChannelFailure"; readonly recipient: number }

export interface ChannelDataMessage {
  readonly _tag: "ChannelData"
  readonly recipient: number
  readonly data: Uint8Array
}

export interface ChannelExtendedDataMessage {
  readonly _tag: "ChannelExtendedData"
  readonly recipient: number
  readonly dataType: number
  readonly data: Uint8Array
}

const DATA_HEADER = 9
const EXTENDED_DATA_HEADER = 13

function readUint32(b: Uint8Array, p: number): number {
  return ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0
}

function writeUint32(b: Uint8Array, p: number, v: number): void {
  b[p] = v >>> 24
  b[p + 1] = v >>> 16
  b[p + 2] = v >>> 8
  b[p + 3] = v
}

/** Fast-path decode of CHANNEL_DATA; `data` is a view into `payload`. Throws WireError. */
export function decodeChannelData(payload: Uint8Array): ChannelDataMessage {
  if (payload.length < DATA_HEADER) throw new WireError(`truncated CHANNEL_DATA: ${payload.length} bytes`)
  if (payload[0] !== Msg.CHANNEL_DATA) throw new WireError(`not CHANNEL_DATA: message ${payload[0]}`)
  const len = readUint32(payload, 5)
  if (len !== payload.length - DATA_HEADER) {
    throw new WireError(`CHANNEL_DATA length ${len} does not match the ${payload.length - DATA_HEADER} bytes present`)
  }
  return { _tag: "ChannelData", recipient: readUint32(payload, 1), data: payload.subarray(DATA_HEADER) }
}

/** Fast-path decode of CHANNEL_EXTENDED_DATA; `data` is a view into `payload`. Throws WireError. */
export function decodeChannelExtendedData(payload: Uint8Array): ChannelExtendedDataMessage {
  if (payload.length < EXTENDED_DATA_HEADER) {
    throw new WireError(`truncated CHANNEL_EXTENDED_DATA: ${payload.length} bytes`)
  }
  if (payload[0] !== Msg.CHANNEL_EXTENDED_DATA) throw new WireError(`not CHANNEL_EXTENDED_DATA: message ${payload[0]}`)
  const len = readUint32(payload, 9)
  if (len !== payload.length - EXTENDED_DATA_HEADER) {
    throw new WireError(
      `CHANNEL_EXTENDED_DATA length ${len} does not match the ${payload.length - EXTENDED_DATA_HEADER} bytes present`
    )
  }
  return {
    _tag: "ChannelExtendedData",
    recipient: readUint32(payload, 1),
    dataType: readUint32(payload, 5),
    data: payload.subarray(EXTENDED_DATA_HEADER)
  }
}

/** The header of a CHANNEL_DATA (9 bytes) or CHANNEL_EXTENDED_DATA (13 bytes) carrying `length` bytes. */
export function encodeDataHeader(recipient: number, length: number, dataType?: number): Uint8Array {
  if (dataType === undefined) {
    const out = new Uint8Array(DATA_HEADER)
    out[0] = Msg.CHANNEL_DATA
    writeUint32(out, 1, recipient)
    writeUint32(out, 5, length)
    return out
  }
  const out = new Uint8Array(EXTENDED_DATA_HEADER)
  out[0] = Msg.CHANNEL_EXTENDED_DATA
  writeUint32(out, 1, recipient)
  writeUint32(out, 5, dataType)
  writeUint32(out, 9, length)
  return out
}

/** A whole CHANNEL_DATA payload. */
export function encodeChannelData(recipient: number, data: Uint8Array): Uint8Array {
  return concatBytes(encodeDataHeader(recipient, data.length), data)
}

/** A whole CHANNEL_EXTENDED_DATA payload. */
export function encodeChannelExtendedData(recipient: number, dataType: number, data: Uint8Array): Uint8Array {
  return concatBytes(encodeDataHeader(recipient, data.length, dataType), data)
}

/**
 * Generic decode of any connection message, through SshReader. Used for everything but
 * the data messages in the hot path (and to cross-check the fast path). Throws WireError.
 */
export function decodeConnectionMessage(payload: Uint8Array): ConnectionMessage {
  const r = new SshReader(payload)
  const type = r.byte()
  let msg: ConnectionMessage
  switch (type) {
    case Msg.GLOBAL_REQUEST:
      msg = { _tag: "GlobalRequest", name: r.ascii(), wantReply: r.bool(), data: r.rest() }
      break
    case Msg.REQUEST_SUCCESS:
      msg = { _tag: "RequestSuccess", data: r.rest() }
      break
    case Msg.REQUEST_FAILURE:
      msg = { _tag: "RequestFailure" }
      break
    case Msg.CHANNEL_OPEN:
      msg = {
        _tag: "ChannelOpen",
        channelType: r.ascii(),
        sender: r.uint32(),
        window: r.uint32(),
        maxPacket: r.uint32(),
        data: r.rest()
      }
      break
    case Msg.CHANNEL_OPEN_CONFIRMATION:
      msg = {
        _tag: "ChannelOpenConfirmation",
        recipient: r.uint32(),
        sender: r.uint32(),
        window: r.uint32(),
        maxPacket: r.uint32(),
        data: r.rest()
      }
      break
    case Msg.CHANNEL_OPEN_FAILURE: {
      const recipient = r.uint32()
      const reason = r.uint32()
      const description = r.utf8()
      // Some old peers leave the language tag out.
      const language = r.remaining > 0 ? r.ascii() : ""
      msg = { _tag: "ChannelOpenFailure", recipient, reason, description, language }
      break
    }
    case Msg.CHANNEL_WINDOW_ADJUST:
      msg = { _tag: "ChannelWindowAdjust", recipient: r.uint32(), bytes: r.uint32() }
      break
    case Msg.CHANNEL_DATA:
      msg = { _tag: "ChannelData", recipient: r.uint32(), data: r.string() }
      break
    case Msg.CHANNEL_EXTENDED_DATA:
      msg = { _tag: "ChannelExtendedData", recipient: r.uint32(), dataType: r.uint32(), data: r.string() }
      break
    case Msg.CHANNEL_EOF:
      msg = { _tag: "ChannelEof", recipient: r.uint32() }
      break
    case Msg.CHANNEL_CLOSE:
      msg = { _tag: "ChannelClose", recipient: r.uint32() }
      break
    case Msg.CHANNEL_REQUEST:
      msg = { _tag: "ChannelRequest", recipient: r.uint32(), request: r.ascii(), wantReply: r.bool(), data: r.rest() }
      break
    case Msg.CHANNEL_SUCCESS:
      msg = { _tag: "ChannelSuccess", recipient: r.uint32() }
      break
    case Msg.CHANNEL_FAILURE:
      msg = { _tag: "ChannelFailure", recipient: r.uint32() }
      break
    default:
      throw new WireError(`message ${type} is not a connection-protocol message`)
  }
  r.end()
  return msg
}

/** Generic encode of any connection message (data messages delegate to the fast path). */
export function encodeConnectionMessage(msg: ConnectionMessage): Uint8Array {
  switch (msg._tag) {
    case "GlobalRequest":
      return message((w) => w.byte(Msg.GLOBAL_REQUEST).string(msg.name).bool(msg.wantReply).raw(msg.data))
    case "RequestSuccess":
      return message((w) => w.byte(Msg.REQUEST_SUCCESS).raw(msg.data))
    case "RequestFailure":
      return Uint8Array.of(Msg.REQUEST_FAILURE)
    case "ChannelOpen":
      return message((w) =>
        w
          .byte(Msg.CHANNEL_OPEN)
          .string(msg.channelType)
          .uint32(msg.sender)
          .uint32(msg.window)
          .uint32(msg.maxPacket)
          .raw(msg.data)
      )
    case "ChannelOpenConfirmation":
      return message((w) =>
        w
          .byte(Msg.CHANNEL_OPEN_CONFIRMATION)
          .uint32(msg.recipient)
          .uint32(msg.sender)
          .uint32(msg.window)
          .uint32(msg.maxPacket)
          .raw(msg.data)
      )
    case "ChannelOpenFailure":
      return message((w) =>
        w
          .byte(Msg.CHANNEL_OPEN_FAILURE)
          .uint32(msg.recipient)
          .uint32(msg.reason)
          .string(msg.description)
          .string(msg.language)
      )
    case "ChannelWindowAdjust":
      return message((w) => w.byte(Msg.CHANNEL_WINDOW_ADJUST).uint32(msg.recipient).uint32(msg.bytes), 9)
    case "ChannelData":
      return encodeChannelData(msg.recipient, msg.data)
    case "ChannelExtendedData":
      return encodeChannelExtendedData(msg.recipient, msg.dataType, msg.data)
    case "ChannelEof":
      return message((w) => w.byte(Msg.CHANNEL_EOF).uint32(msg.recipient), 5)
    case "ChannelClose":
      return message((w) => w.byte(Msg.CHANNEL_CLOSE).uint32(msg.recipient), 5)
    case "ChannelRequest":
      return message((w) =>
        w.byte(Msg.CHANNEL_REQUEST).uint32(msg.recipient).string(msg.request).bool(msg.wantReply).raw(msg.data)
      )
    case "ChannelSuccess":
      return message((w) => w.byte(Msg.CHANNEL_SUCCESS).uint32(msg.recipient), 5)
    case "ChannelFailure":
      return message((w) => w.byte(Msg.CHANNEL_FAILURE).uint32(msg.recipient), 5)
  }
}

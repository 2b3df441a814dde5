/**
 * The SSH public key file format of RFC 4716 ("---- BEGIN SSH2 PUBLIC KEY ----"), written by
 * `ssh-keygen -e` and PuTTYgen: optional headers (with `\` continuations), then the base64 blob.
 */
import { KeyError } from "./errors.js"
import { decodeBase64 } from "./publicKey.js"

const BEGIN = "---- BEGIN SSH2 PUBLIC KEY ----"
const END = "---- END SSH2 PUBLIC KEY ----"

export interface Rfc4716Key {
  readonly blob: Uint8Array
  /** Header tags as written (RFC 4716 §3.3); `Comment` holds the comment, unquoted. */
  readonly headers: ReadonlyMap<string, string>
}

export function isRfc4716(text: string): boolean {
  return text.trimStart().startsWith(BEGIN)
}

/** Reads the first RFC 4716 public key in `text`; throws KeyError("corrupt") on a malformed one. */
export function decodeRfc4716(text: string): Rfc4716Key {
  const lines = text.split(/\r\n|\r|\n/).map((l) => l.trim())
  const start = lines.indexOf(BEGIN)
  const end = lines.indexOf(END, start + 1)
  if (start < 0 || end < 0) throw new KeyError("corrupt", "RFC 4716 public key without its BEGIN and END lines")
  const headers = new Map<string, string>()
  let i = start + 1
  for (; i < end && lines[i]!.includes(":"); i++) {
    const colon = lines[i]!.indexOf(":")
    const tag = lines[i]!.slice(0, colon)
    let value = lines[i]!.slice(colon + 1).trim()
    // a header value continues while its line ends in a backslash (RFC 4716 §3.3)
    while (value.endsWith("\\")) {
      i++
      if (i >= end) throw new KeyError("corrupt", "RFC 4716 header continues past the end of the key")
      value = value.slice(0, -1) + lines[i]!
    }
    if (tag.length === 0 || tag.length > 64 || !/^[\x21-\x39\x3b-\x7e]+$/.test(tag)) {
      throw new KeyError("corrupt", `bad RFC 4716 header tag ${JSON.stringify(tag.slice(0, 64))}`)
    }
    if (tag.toLowerCase() === "comment" && value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1)
    headers.set(tag, value)
  }
  const body = lines.slice(i, end).join("")
  if (body === "") throw new KeyError("corrupt", "RFC 4716 public key has no key data")
  return { blob: decodeBase64(body, "RFC 4716 public key"), headers }
}

/** Writes a public key blob in the RFC 4716 format, as `ssh-keygen -e` does. */
export function encodeRfc4716(blob: Uint8Array, comment?: string): string {
  const b64 = Buffer.from(blob).toString("base64")
  const lines = [BEGIN]
  if (comment !== undefined && comment !== "") lines.push(`Comment: "${comment}"`)
  for (let i = 0; i < b64.length; i += 70) lines.push(b64.slice(i, i + 70))
  lines.push(END)
  return `${lines.join("\n")}\n`
}

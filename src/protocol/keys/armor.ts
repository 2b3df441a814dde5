/**
 * PEM-style armor ("-----BEGIN X-----", optional RFC 1421 headers, base64, "-----END X-----"),
 * used by OpenSSH, PKCS#1/#8 and SEC1 key files.
 */

export interface ArmoredBlock {
  readonly label: string
  /** RFC 1421 headers such as Proc-Type and DEK-Info (legacy encrypted PEM). */
  readonly headers: ReadonlyMap<string, string>
  /** The base64 body with whitespace removed. */
  readonly base64: string
  /** The whole block, normalised to "\n" line ends, as node:crypto wants it. */
  readonly text: string
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)\r?\n?-----END \1-----/g

/** The first armored block whose label satisfies `accept`. */
export function findArmoredBlock(text: string, accept: (label: string) => boolean): ArmoredBlock | undefined {
  for (const match of text.matchAll(BLOCK)) {
    const label = match[1]!
    if (!accept(label)) continue
    const lines = match[2]!.split(/\r?\n/)
    const headers = new Map<string, string>()
    let i = 0
    const hasHeaders = lines.some((l) => /^[A-Za-z-]+:/.test(l))
    if (hasHeaders) {
      for (; i < lines.length && lines[i]!.trim() !== ""; i++) {
        const colon = lines[i]!.indexOf(":")
        if (colon > 0) headers.set(lines[i]!.slice(0, colon).trim(), lines[i]!.slice(colon + 1).trim())
      }
    }
    const base64 = lines.slice(i).join("").replace(/\s+/g, "")
    return { label, headers, base64, text: match[0].replace(/\r\n/g, "\n") + "\n" }
  }
  return undefined
}

/** Armors binary data with base64 lines of `width` characters (OpenSSH uses 70). */
export function armor(label: string, data: Uint8Array, width = 70): string {
  const b64 = Buffer.from(data).toString("base64")
  const lines: Array<string> = []
  for (let i = 0; i < b64.length; i += width) lines.push(b64.slice(i, i + width))
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`
}

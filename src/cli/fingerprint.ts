import { existsSync, readFileSync } from "node:fs"
import * as Effect from "effect/Effect"
import { isCertificateType } from "../protocol/keys/algorithms.js"
import { parseAuthorizedKeyLine } from "../protocol/keys/authorizedKeys.js"
import { parsePrivateKey } from "../protocol/keys/privateKey.js"
import { fingerprint as fingerprintOf, parsePublicKeyLine, type SshPublicKey } from "../protocol/keys/publicKey.js"
import { parseFlags } from "./flags.js"
import { UsageError } from "./options.js"

export const fingerprintUsage = "effect-ssh fingerprint [-E md5|sha256] FILE"

/** ssh-keygen's short names for key types, as `ssh-keygen -l` prints them in parentheses. */
const TYPE_LABELS: Record<string, string> = {
  "ssh-ed25519": "ED25519",
  "ssh-rsa": "RSA",
  "ssh-dss": "DSA",
  "ecdsa-sha2-nistp256": "ECDSA",
  "ecdsa-sha2-nistp384": "ECDSA",
  "ecdsa-sha2-nistp521": "ECDSA",
  "sk-ssh-ed25519@openssh.com": "ED25519-SK",
  "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK"
}

function label(key: SshPublicKey): string {
  const plain = key.certificate?.keyType ?? key.type
  return `${TYPE_LABELS[plain] ?? plain}${isCertificateType(key.type) ? "-CERT" : ""}`
}

/**
 * `effect-ssh fingerprint`: prints `BITS FINGERPRINT COMMENT (TYPE)` for each key in FILE (a
 * public key, certificate, private key, authorized_keys or known_hosts file), exactly as
 * `ssh-keygen -l -f FILE` does.
 */
export function fingerprint(argv: ReadonlyArray<string>): Effect.Effect<number, unknown> {
  return Effect.sync(() => {
    const { values, rest } = parseFlags(argv, "Ef", "l")
    const hash = values.get("E") ?? "sha256"
    if (hash !== "sha256" && hash !== "md5") throw new UsageError(`-E takes md5 or sha256, not ${hash}`)
    const file = values.get("f") ?? rest[0]
    if (file === undefined || rest.length > (values.has("f") ? 0 : 1)) throw new UsageError("fingerprint needs exactly one FILE")
    const lines = keysIn(file).map(({ key, comment }) => `${key.bits} ${fingerprintOf(key.certificate?.publicKey ?? key.blob, hash)} ${comment} (${label(key)})`)
    process.stdout.write(`${lines.join("\n")}\n`)
    return 0
  })
}

function keysIn(file: string): ReadonlyArray<{ key: SshPublicKey; comment: string }> {
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`)
  }
  if (/PRIVATE KEY-----|^\s*PuTTY-User-Key-File-/.test(text)) {
    // as ssh-keygen: the .pub beside a private key wins, and an empty comment becomes its file name
    const pub = `${file}.pub`
    if (existsSync(pub)) {
      const key = parsePublicKeyLine(readFileSync(pub, "utf8").trim())
      return [{ key, comment: key.comment || pub }]
    }
    const key = parsePrivateKey(text, process.env.SSH_PASSPHRASE)
    return [{ key: key.publicKey, comment: key.comment }]
  }
  const found: Array<{ key: SshPublicKey; comment: string }> = []
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#")) continue
    const key = readLine(line)
    if (key !== undefined) found.push(key)
  }
  if (found.length === 0) throw new Error(`${file} is not a public key file.`)
  return found
}

/** A public key line, an authorized_keys line with options, or a known_hosts line (its hosts are the comment). */
function readLine(line: string): { key: SshPublicKey; comment: string } | undefined {
  const attempts: ReadonlyArray<() => { key: SshPublicKey; comment: string }> = [
    () => {
      const key = parsePublicKeyLine(line)
      return { key, comment: key.comment || "no comment" }
    },
    () => {
      const key = parseAuthorizedKeyLine(line).key
      return { key, comment: key.comment || "no comment" }
    },
    () => {
      const fields = line.replace(/^@\S+\s+/, "").split(/\s+/)
      const key = parsePublicKeyLine(fields.slice(1, 3).join(" "))
      return { key, comment: fields[0]! }
    }
  ]
  for (const attempt of attempts) {
    try {
      return attempt()
    } catch {
      // try the next form
    }
  }
  return undefined
}

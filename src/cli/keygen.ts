import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { hostname, userInfo } from "node:os"
import * as Effect from "effect/Effect"
import { KeyError } from "../protocol/keys/errors.js"
import { encodeOpenSSHPrivateKey, generatePrivateKey, parsePrivateKey, type SshPrivateKey } from "../protocol/keys/privateKey.js"
import { fingerprint, formatPublicKeyLine } from "../protocol/keys/publicKey.js"
import { parseFlags } from "./flags.js"
import { UsageError } from "./options.js"

export const keygenUsage = "effect-ssh keygen -t ed25519|ecdsa|rsa [-b BITS] [-N PASSPHRASE] [-C COMMENT] -f FILE | keygen -y -f FILE"

const TYPES = ["ed25519", "ecdsa", "rsa"] as const

/**
 * `effect-ssh keygen`: writes a new key pair (FILE in the OpenSSH format, FILE.pub), as
 * ssh-keygen does; with -y prints the public key of FILE. The passphrase is -N, else
 * SSH_PASSPHRASE (none when neither is given).
 */
export function keygen(argv: ReadonlyArray<string>): Effect.Effect<number, unknown> {
  return Effect.sync(() => {
    const { values, flags, rest } = parseFlags(argv, "tbNCf", "yq")
    if (rest.length > 0) throw new UsageError(`unexpected argument ${rest[0]}`)
    const file = values.get("f")
    if (file === undefined) throw new UsageError("keygen needs -f FILE")
    const passphrase = values.get("N") ?? process.env.SSH_PASSPHRASE
    if (flags.has("y")) {
      const key = readPrivateKey(file, passphrase)
      process.stdout.write(`${formatPublicKeyLine(key.publicKey, key.comment)}\n`)
      return 0
    }
    const type = values.get("t") ?? "ed25519"
    if (!TYPES.includes(type as (typeof TYPES)[number])) throw new UsageError(`unknown key type ${type}; use ed25519, ecdsa or rsa`)
    const bitsText = values.get("b")
    const bits = bitsText === undefined ? undefined : Number(bitsText)
    if (bits !== undefined && !Number.isInteger(bits)) throw new UsageError(`bad -b ${bitsText}`)
    if (existsSync(file)) throw new Error(`${file} already exists; not overwriting it`)
    const comment = values.get("C") ?? `${userInfo().username}@${hostname()}`
    const key = generatePrivateKey(type as (typeof TYPES)[number], { comment, ...(bits !== undefined ? { bits } : {}) })
    const encrypted = passphrase !== undefined && passphrase !== ""
    writeFileSync(file, encodeOpenSSHPrivateKey(key, encrypted ? { passphrase } : {}), { mode: 0o600 })
    writeFileSync(`${file}.pub`, `${formatPublicKeyLine(key.publicKey, comment)}\n`, { mode: 0o644 })
    if (!flags.has("q")) {
      process.stdout.write(
        `Your identification has been saved in ${file}\nYour public key has been saved in ${file}.pub\n` +
          `The key fingerprint is:\n${fingerprint(key.publicKey.blob)} ${comment}\n`
      )
    }
    return 0
  })
}

function readPrivateKey(file: string, passphrase: string | undefined): SshPrivateKey {
  let data: Buffer
  try {
    data = readFileSync(file)
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`)
  }
  try {
    return parsePrivateKey(data, passphrase)
  } catch (e) {
    if (e instanceof KeyError && e.reason === "passphrase-required") throw new Error(`${file} is encrypted: give -N or set SSH_PASSPHRASE`)
    throw new Error(`cannot load ${file}: ${(e as Error).message}`)
  }
}

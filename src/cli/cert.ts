import { readFileSync, writeFileSync } from "node:fs"
import * as Effect from "effect/Effect"
import { DEFAULT_USER_EXTENSIONS, formatCertificateTime, signCertificate } from "../protocol/keys/certificate.js"
import { FOREVER } from "../protocol/keys/certificateEncoding.js"
import { parseValidityInterval } from "../protocol/keys/certificateValidity.js"
import { parsePrivateKey } from "../protocol/keys/privateKey.js"
import { formatPublicKeyLine, parsePublicKeyBlob } from "../protocol/keys/publicKey.js"
import { parsePublicKey } from "../protocol/keys/publicKeyFile.js"
import { parseFlags } from "./flags.js"
import { UsageError } from "./options.js"

export const certUsage = "effect-ssh cert -s CA_KEY -I ID [-h] [-n PRINCIPALS] [-V VALIDITY] [-z SERIAL] [-O OPTION ...] PUBLIC_KEY"

/** `-O` as ssh-keygen takes it: clear, the no- and permit- extensions, force-command=, source-address=. */
function applyOption(option: string, critical: Record<string, string>, extensions: Set<string>): void {
  const eq = option.indexOf("=")
  const name = (eq < 0 ? option : option.slice(0, eq)).toLowerCase()
  if (name === "clear") extensions.clear()
  else if (name === "force-command" || name === "source-address") {
    if (eq < 0) throw new UsageError(`-O ${name} needs a value`)
    critical[name] = option.slice(eq + 1)
  } else {
    const extension = DEFAULT_USER_EXTENSIONS.find((e) => e.toLowerCase() === name.replace(/^no-/, "permit-"))
    if (extension === undefined) throw new UsageError(`unsupported -O option ${option}`)
    if (name.startsWith("no-")) extensions.delete(extension)
    else extensions.add(extension)
  }
}

/**
 * `effect-ssh cert`: signs PUBLIC_KEY with CA_KEY into PUBLIC_KEY's `-cert.pub`, as
 * `ssh-keygen -s` does. The CA key's passphrase comes from SSH_PASSPHRASE.
 */
export function cert(argv: ReadonlyArray<string>): Effect.Effect<number, unknown> {
  return Effect.sync(() => {
    const argvWithoutO: string[] = []
    const options: string[] = []
    for (let i = 0; i < argv.length; i++) {
      if (argv[i] === "-O") {
        const v = argv[++i]
        if (v === undefined) throw new UsageError("-O needs a value")
        options.push(v)
      } else argvWithoutO.push(argv[i]!)
    }
    const { values, flags, rest } = parseFlags(argvWithoutO, "sInVz", "h")
    const caFile = values.get("s")
    const keyId = values.get("I")
    if (caFile === undefined || keyId === undefined) throw new UsageError("cert needs -s CA_KEY and -I ID")
    if (rest.length !== 1) throw new UsageError("cert needs exactly one PUBLIC_KEY file")
    const publicFile = rest[0]!
    const certType = flags.has("h") ? "host" : "user"
    const ca = parsePrivateKey(readFileSync(caFile), process.env.SSH_PASSPHRASE)
    const publicKey = parsePublicKey(readFileSync(publicFile))
    const validity = values.has("V") ? parseValidityInterval(values.get("V")!, Date.now()) : { validAfter: 0n, validBefore: FOREVER }
    const serialText = values.get("z") ?? "0"
    if (!/^\d+$/.test(serialText)) throw new UsageError(`bad serial ${serialText}`)
    const critical: Record<string, string> = {}
    const extensions = new Set(certType === "user" ? DEFAULT_USER_EXTENSIONS : [])
    for (const option of options) applyOption(option, critical, extensions)
    const principals = values.get("n")?.split(",").filter((p) => p !== "") ?? []
    const certificate = signCertificate(ca, publicKey, {
      certType,
      keyId,
      principals,
      serial: BigInt(serialText),
      ...validity,
      criticalOptions: critical,
      extensions: Object.fromEntries([...extensions].map((e) => [e, ""]))
    })
    const out = `${publicFile.replace(/\.pub$/, "")}-cert.pub`
    writeFileSync(out, `${formatPublicKeyLine(parsePublicKeyBlob(certificate.blob), publicKey.comment || publicFile)}\n`, { mode: 0o644 })
    const valid =
      certificate.validAfter === 0n && certificate.validBefore === FOREVER
        ? "forever"
        : `from ${formatCertificateTime(certificate.validAfter)} to ${formatCertificateTime(certificate.validBefore)}`
    process.stderr.write(
      `Signed ${certType} key ${out}: id "${keyId}" serial ${certificate.serial} ${principals.length > 0 ? `for ${principals.join(",")}` : "for any principal"} valid ${valid}\n`
    )
    return 0
  })
}

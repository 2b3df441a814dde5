/**
 * Encoded terminal modes of a "pty-req" (RFC 4254 §8, IUTF8 from RFC 8160): a stream of
 * opcode bytes, each with a uint32 argument, ended by TTY_OP_END.
 */
import { SshReader } from "../wire/reader.js"
import { SshWriter } from "../wire/writer.js"

/** Opcode of every terminal mode defined by RFC 4254 §8 and RFC 8160, by mnemonic. */
export const TerminalMode = {
  VINTR: 1,
  VQUIT: 2,
  VERASE: 3,
  VKILL: 4,
  VEOF: 5,
  VEOL: 6,
  VEOL2: 7,
  VSTART: 8,
  VSTOP: 9,
  VSUSP: 10,
  VDSUSP: 11,
  VREPRINT: 12,
  VWERASE: 13,
  VLNEXT: 14,
  VFLUSH: 15,
  VSWTCH: 16,
  VSTATUS: 17,
  VDISCARD: 18,
  IGNPAR: 30,
  PARMRK: 31,
  INPCK: 32,
  ISTRIP: 33,
  INLCR: 34,
  IGNCR: 35,
  ICRNL: 36,
  IUCLC: 37,
  IXON: 38,
  IXANY: 39,
  IXOFF: 40,
  IMAXBEL: 41,
  IUTF8: 42,
  ISIG: 50,
  ICANON: 51,
  XCASE: 52,
  ECHO: 53,
  ECHOE: 54,
  ECHOK: 55,
  ECHONL: 56,
  NOFLSH: 57,
  TOSTOP: 58,
  IEXTEN: 59,
  ECHOCTL: 60,
  ECHOKE: 61,
  PENDIN: 62,
  OPOST: 70,
  OLCUC: 71,
  ONLCR: 72,
  OCRNL: 73,
  ONOCR: 74,
  ONLRET: 75,
  CS7: 90,
  CS8: 91,
  PARENB: 92,
  PARODD: 93,
  TTY_OP_ISPEED: 128,
  TTY_OP_OSPEED: 129
} as const
export type TerminalModeName = keyof typeof TerminalMode

/** Mode values by mnemonic; characters are their code (255 = none), flags 0 or 1, speeds in baud. */
export type TerminalModes = { readonly [K in TerminalModeName]?: number }

const TTY_OP_END = 0
/** RFC 4254 §8: opcodes 160–255 are undefined and stop parsing. */
const FIRST_UNDEFINED_OPCODE = 160

const nameByOpcode = new Map<number, TerminalModeName>(
  Object.entries(TerminalMode).map(([name, opcode]) => [opcode, name as TerminalModeName])
)

/** Encodes modes into the "encoded terminal modes" string of a pty-req, TTY_OP_END included. */
export function encodeTerminalModes(modes: TerminalModes): Uint8Array {
  const w = new SshWriter(5 * Object.keys(modes).length + 1)
  for (const [name, value] of Object.entries(modes)) {
    if (value === undefined) continue
    const opcode = TerminalMode[name as TerminalModeName]
    if (opcode === undefined) throw new RangeError(`unknown terminal mode ${name}`)
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
      throw new RangeError(`terminal mode ${name}: ${value} is not a uint32`)
    }
    w.byte(opcode).uint32(value)
  }
  return w.byte(TTY_OP_END).finish()
}

/**
 * Decodes encoded terminal modes. Opcodes this table does not know are skipped (RFC 4254 lets
 * the server ignore them); parsing stops at TTY_OP_END, at an opcode of 160 or more, or at the
 * end of the string. Throws WireError when an argument is cut short.
 */
export function decodeTerminalModes(encoded: Uint8Array): TerminalModes {
  const r = new SshReader(encoded)
  const modes: { [K in TerminalModeName]?: number } = {}
  while (r.remaining > 0) {
    const opcode = r.byte()
    if (opcode === TTY_OP_END || opcode >= FIRST_UNDEFINED_OPCODE) break
    const value = r.uint32()
    const name = nameByOpcode.get(opcode)
    if (name !== undefined) modes[name] = value
  }
  return modes
}

import { fail } from './errors.js';
import type { HcallLayer } from './kvm-tce.js';
import type { State } from './state.js';
import { toHex } from './u64.js';

/**
 * What happens to an hcall before any handler runs (ppc-platform.md 3.4). Two dispatchers exist:
 *
 * - Under TCG, QEMU's emulate_spapr_hypercall (hw/ppc/spapr.c) answers an `sc 1` made with MSR[PR]=1
 *   with H_PRIVILEGE before looking at the opcode; otherwise spapr_hypercall (hw/ppc/spapr_hcall.c)
 *   looks the opcode up and answers H_FUNCTION when no handler is registered (a misaligned opcode
 *   never has one: the table is indexed by opcode / 4 and refuses opcode & 3).
 * - Under KVM, the kernel sees the `sc 1` first. From guest problem state it never becomes an hcall
 *   (book3s_hv.c kvmppc_handle_exit_hv: a privileged program check for a radix guest, a syscall
 *   reflected to the guest kernel for a hash guest; the old P7/P8 real-mode path reflects it too):
 *   no H_* code reaches the guest, which the model refuses with EPERM. Otherwise KVM answers
 *   the hcalls it handles and punts every other one (H_TOO_HARD, an opcode it does not know) to
 *   QEMU's spapr_hypercall, so H_FUNCTION comes from QEMU either way.
 *
 * QEMU registers all four TCE hcalls unconditionally (spapr_iommu.c spapr_tce_table_class_init), so
 * no TCE opcode is ever H_FUNCTION; only an opcode QEMU has no handler for is.
 */

/** The TCE hcall opcodes (asm/hvcall.h), each with its own command. */
export const TCE_HCALL_OPCODES: Readonly<Record<number, string>> = {
  0x1c: 'hGetTce',
  0x20: 'hPutTce',
  0x138: 'hStuffTce',
  0x13c: 'hPutTceIndirect',
};

/** The guest runs under KVM once KVM holds guest memory (a memslot) or a TCE table; else QEMU emulates the CPU. */
export function underKvm(state: State): boolean {
  return Object.keys(state.memslots).length > 0 || Object.keys(state.kvmTables).length > 0;
}

/** The privilege check every hcall meets first; `layer: "kvm"` means KVM is there. */
export function hcallEntry(state: State, problemState: boolean | undefined, layer: HcallLayer | undefined): void {
  if (!problemState) return;
  if (layer === 'kvm' || underKvm(state)) {
    fail('EPERM', 'sc 1 from guest problem state is no hypercall under KVM: the guest kernel gets a program check (radix) or the reflected syscall (hash)');
  }
  fail('H_PRIVILEGE', 'hypercall made with MSR[PR]=1');
}

/**
 * An hcall opcode the model has no handler for. It never succeeds: H_PRIVILEGE first (as above), then
 * H_FUNCTION for an opcode no QEMU registers (opcode & 3). A TCE opcode has its own command (EINVAL);
 * any other aligned opcode is EOPNOTSUPP, since whether QEMU registers it depends on QEMU's version
 * and machine options, which the model does not carry.
 */
export function hcallUnhandled(state: State, opcode: number, problemState: boolean | undefined): never {
  hcallEntry(state, problemState, undefined);
  const typed = TCE_HCALL_OPCODES[opcode];
  if (typed !== undefined) fail('EINVAL', `opcode ${toHex(BigInt(opcode))} is a TCE hcall: use the ${typed} command`);
  if (opcode & 3) fail('H_FUNCTION', `no hcall is registered for opcode ${toHex(BigInt(opcode))}`);
  fail('EOPNOTSUPP', `opcode ${toHex(BigInt(opcode))}: the model knows only the TCE hcalls, not whether QEMU registers this one`);
}

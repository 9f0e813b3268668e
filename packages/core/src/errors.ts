import type { Output } from './commands.js';

/**
 * Kernel-style error codes. Domain code speaks errno names (and hypervisor H_* / RTAS names), never
 * process exit codes or HTTP numbers: those are mapped at the CLI edge only.
 */
export const ERRNO_CODES = [
  'EPERM', 'ENOENT', 'ENXIO', 'E2BIG', 'EBADF', 'ENOMEM', 'EFAULT', 'EBUSY', 'EEXIST', 'ENODEV', 'EINVAL',
  'ENOSPC', 'ERANGE', 'EDEADLOCK', 'ENOTTY', 'EOPNOTSUPP', 'EADDRINUSE', 'EOVERFLOW', 'EMSGSIZE',
  // errno 44: what userspace reads when a VFIO sPAPR ioctl returns H_NOT_ENOUGH_RESOURCES (-44) raw.
  'ECHRNG',
] as const;
export const HCALL_CODES = [
  'H_HARDWARE', 'H_FUNCTION', 'H_PRIVILEGE', 'H_PARAMETER', 'H_NOT_ENOUGH_RESOURCES', 'H_TOO_HARD',
] as const;

/** RTAS call statuses the modelled DDW calls return (QEMU spapr.h): HW_ERROR -1, PARAM_ERROR -3. */
export const RTAS_CODES = ['RTAS_HW_ERROR', 'RTAS_PARAM_ERROR'] as const;

export type ErrnoCode = (typeof ERRNO_CODES)[number];
export type HcallCode = (typeof HCALL_CODES)[number];
export type RtasCode = (typeof RTAS_CODES)[number];
export type ErrorCode = ErrnoCode | HcallCode | RtasCode;

/**
 * A command the model refuses. Carries a kernel-style code; a refused command changes nothing. Some
 * refusals still report values, as the kernel copies a struct back with the error (EMSGSIZE from
 * IOMMU_IOAS_IOVA_RANGES sets the count needed): those are in `output`.
 */
export class IommuError extends Error {
  override readonly name = 'IommuError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly output?: Output,
  ) {
    super(message);
  }

  /** Duck-typed so the check still holds when two copies of the package are loaded. */
  static is(value: unknown): value is IommuError {
    return (
      value instanceof IommuError ||
      (typeof value === 'object' && value !== null && (value as { name?: unknown }).name === 'IommuError' &&
        typeof (value as { code?: unknown }).code === 'string')
    );
  }
}

/** Throws the refusal; `decide` turns it into a result. Typed `never` so checks read as guards. */
export function fail(code: ErrorCode, message: string, output?: Output): never {
  throw new IommuError(code, message, output);
}

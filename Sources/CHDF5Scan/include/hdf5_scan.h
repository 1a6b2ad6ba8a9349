#ifndef ZOO_HDF5_SCAN_H
#define ZOO_HDF5_SCAN_H

/* What the HDF5 scanner (the HDF5Scan module, shared by the `zoo` library and the small
 * `zoo-hdf5-worker` executable) needs from libhdf5 that Swift cannot import directly:
 * macros that expand to function calls, and calls whose names or structs changed between
 * HDF5 1.10 and 1.12+. Compiled as C here rather than as inline functions in a system
 * module, so the worker can link libhdf5 statically without the module's `link` directive. */
#if __has_include(<hdf5/serial/hdf5.h>)
#include <hdf5/serial/hdf5.h>
#else
#include <hdf5.h>
#endif
#include <stddef.h>

hid_t zoo_scan_native_float(void);
hid_t zoo_scan_ieee_f32le(void);
unsigned zoo_scan_acc_rdonly(void);

/* 1 when `name` (relative to `loc`) is a hard link, 0 for soft, external or user-defined
 * links (which the reader never follows: they can point outside the file), negative on error. */
int zoo_scan_link_is_hard(hid_t loc, const char *name);

/* The object's type (H5O_TYPE_GROUP, H5O_TYPE_DATASET, ...) and 16 bytes that identify it
 * within the file, so a traversal can notice hard-link cycles. Negative on error. */
int zoo_scan_object_identity(hid_t loc, const char *name, int *type, unsigned char key[16]);

/* Copies the most specific message on the calling thread's error stack ("file signature not
 * found", "truncated file: eof = ...") into `buffer`, then clears the stack. */
void zoo_scan_take_error(char *buffer, size_t capacity);

/* Link names of one group in a single iteration (H5Literate), joined by NUL bytes into a
 * malloc'd buffer the caller frees. Asking for names one index at a time
 * (H5Lget_name_by_idx) makes libhdf5 rebuild and sort the group's link table on every call:
 * quadratic, over a minute for 10,000 links. Creation order when the file tracks it,
 * otherwise name order. Returns the link count, or -1 on error, or -2 past `max_links`. */
long zoo_scan_link_names(hid_t group, long max_links, char **names, size_t *length);

#endif

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

/* Small wrappers for what Swift cannot import from hdf5.h: macros that expand to function
 * calls (H5T_NATIVE_FLOAT, H5F_ACC_RDONLY) and calls whose struct layout or name changed
 * between HDF5 1.10 and 1.12+ (object addresses became tokens, H5Lget_info became
 * H5Lget_info2). Keeping those differences here lets the Swift reader build against both. */

static inline hid_t zoo_h5_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t zoo_h5_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline unsigned zoo_h5_acc_rdonly(void) { return H5F_ACC_RDONLY; }

/* 1 when `name` (relative to `loc`) is a hard link, 0 for soft, external or user-defined
 * links (which the reader never follows: they can point outside the file), negative on error. */
static inline int zoo_h5_link_is_hard(hid_t loc, const char *name) {
    H5L_info_t info;
    if (H5Lget_info(loc, name, &info, H5P_DEFAULT) < 0) return -1;
    return info.type == H5L_TYPE_HARD ? 1 : 0;
}

/* The object's type (H5O_TYPE_GROUP, H5O_TYPE_DATASET, ...) and 16 bytes that identify it
 * within the file, so a traversal can notice hard-link cycles. Negative on error. */
static inline int zoo_h5_object_identity(hid_t loc, const char *name, int *type, unsigned char key[16]) {
    memset(key, 0, 16);
#if H5_VERSION_GE(1, 12, 0)
    H5O_info2_t info;
    if (H5Oget_info_by_name3(loc, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return -1;
    memcpy(key, &info.token, sizeof(info.token) < 16 ? sizeof(info.token) : 16);
#else
    H5O_info_t info;
    if (H5Oget_info_by_name2(loc, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return -1;
    memcpy(key, &info.addr, sizeof(info.addr));
#endif
    *type = (int)info.type;
    return 0;
}

typedef struct { char *buffer; size_t capacity; int found; } zoo_h5_error_sink;

static inline herr_t zoo_h5_error_visitor(unsigned n, const H5E_error2_t *err, void *data) {
    zoo_h5_error_sink *sink = (zoo_h5_error_sink *)data;
    (void)n;
    if (sink->found || err == NULL || err->desc == NULL || err->desc[0] == '\0') return 0;
    strncpy(sink->buffer, err->desc, sink->capacity - 1);
    sink->buffer[sink->capacity - 1] = '\0';
    sink->found = 1;
    return 0;
}

/* Copies the most specific message on the calling thread's error stack ("file signature not
 * found", "truncated file: eof = ...") into `buffer`, then clears the stack. */
static inline void zoo_h5_take_error(char *buffer, size_t capacity) {
    zoo_h5_error_sink sink = { buffer, capacity, 0 };
    if (capacity == 0) return;
    buffer[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, zoo_h5_error_visitor, &sink);
    H5Eclear2(H5E_DEFAULT);
}

/* For the Keras writers: file-creation flags and the C string type are macros that call
 * into the library, which Swift cannot import. */
static inline unsigned zoo_h5_acc_excl(void) { return H5F_ACC_EXCL; }
static inline hid_t zoo_h5_c_s1(void) { return H5T_C_S1; }

/* Link names of one group in a single iteration (H5Literate), joined by NUL bytes into a
 * malloc'd buffer the caller frees. Asking for names one index at a time
 * (H5Lget_name_by_idx) makes libhdf5 rebuild and sort the group's link table on every call:
 * quadratic, over a minute for 10,000 links. Creation order when the file tracks it,
 * otherwise name order. Returns the link count, or -1 on error, or -2 past `max_links`. */
typedef struct { char *data; size_t length, capacity; long count, max_links; int failed; } zoo_h5_name_list;

#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t zoo_h5_link_info;
#define ZOO_H5_LITERATE H5Literate2
#else
typedef H5L_info_t zoo_h5_link_info;
#define ZOO_H5_LITERATE H5Literate
#endif

static inline herr_t zoo_h5_collect_link(hid_t group, const char *name, const zoo_h5_link_info *info, void *op) {
    zoo_h5_name_list *list = (zoo_h5_name_list *)op;
    size_t n = strlen(name) + 1;
    (void)group; (void)info;
    if (++list->count > list->max_links) return 1;
    if (list->length + n > list->capacity) {
        size_t grown = list->capacity ? list->capacity * 2 : 4096;
        while (grown < list->length + n) grown *= 2;
        char *bigger = (char *)realloc(list->data, grown);
        if (bigger == NULL) { list->failed = 1; return -1; }
        list->data = bigger;
        list->capacity = grown;
    }
    memcpy(list->data + list->length, name, n);
    list->length += n;
    return 0;
}

static inline long zoo_h5_link_names(hid_t group, long max_links, char **names, size_t *length) {
    H5_index_t orders[2] = { H5_INDEX_CRT_ORDER, H5_INDEX_NAME };
    *names = NULL;
    *length = 0;
    for (int i = 0; i < 2; i++) {
        zoo_h5_name_list list = { NULL, 0, 0, 0, max_links, 0 };
        hsize_t position = 0;
        herr_t status = ZOO_H5_LITERATE(group, orders[i], H5_ITER_INC, &position, zoo_h5_collect_link, &list);
        if (status > 0) { free(list.data); return -2; }
        if (status < 0 || list.failed) {
            free(list.data);
            if (i == 0 && !list.failed && list.count == 0) { H5Eclear2(H5E_DEFAULT); continue; }
            return -1;
        }
        *names = list.data;
        *length = list.length;
        return list.count;
    }
    return -1;
}

/* Opens an HDF5 file held in memory (a .keras archive's model.weights.h5) read-only,
 * without copying it: the caller keeps `image` alive until H5Fclose. */
#include <hdf5_hl.h>
static inline hid_t zoo_h5_open_image(void *image, size_t size) {
    return H5LTopen_file_image(image, size, H5LT_FILE_IMAGE_DONT_COPY | H5LT_FILE_IMAGE_DONT_RELEASE);
}

#include "hdf5_scan.h"
#include <stdlib.h>
#include <string.h>

hid_t zoo_scan_native_float(void) { return H5T_NATIVE_FLOAT; }
hid_t zoo_scan_ieee_f32le(void) { return H5T_IEEE_F32LE; }
unsigned zoo_scan_acc_rdonly(void) { return H5F_ACC_RDONLY; }

int zoo_scan_link_is_hard(hid_t loc, const char *name) {
    H5L_info_t info;
    if (H5Lget_info(loc, name, &info, H5P_DEFAULT) < 0) return -1;
    return info.type == H5L_TYPE_HARD ? 1 : 0;
}

int zoo_scan_object_identity(hid_t loc, const char *name, int *type, unsigned char key[16]) {
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

typedef struct { char *buffer; size_t capacity; int found; } error_sink;

static herr_t error_visitor(unsigned n, const H5E_error2_t *err, void *data) {
    error_sink *sink = (error_sink *)data;
    (void)n;
    if (sink->found || err == NULL || err->desc == NULL || err->desc[0] == '\0') return 0;
    strncpy(sink->buffer, err->desc, sink->capacity - 1);
    sink->buffer[sink->capacity - 1] = '\0';
    sink->found = 1;
    return 0;
}

void zoo_scan_take_error(char *buffer, size_t capacity) {
    error_sink sink = { buffer, capacity, 0 };
    if (capacity == 0) return;
    buffer[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, error_visitor, &sink);
    H5Eclear2(H5E_DEFAULT);
}

typedef struct { char *data; size_t length, capacity; long count, max_links; int failed; } name_list;

#if H5_VERSION_GE(1, 12, 0)
typedef H5L_info2_t link_info;
#define LINK_ITERATE H5Literate2
#else
typedef H5L_info_t link_info;
#define LINK_ITERATE H5Literate
#endif

static herr_t collect_link(hid_t group, const char *name, const link_info *info, void *op) {
    name_list *list = (name_list *)op;
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

long zoo_scan_link_names(hid_t group, long max_links, char **names, size_t *length) {
    H5_index_t orders[2] = { H5_INDEX_CRT_ORDER, H5_INDEX_NAME };
    *names = NULL;
    *length = 0;
    for (int i = 0; i < 2; i++) {
        name_list list = { NULL, 0, 0, 0, max_links, 0 };
        hsize_t position = 0;
        herr_t status = LINK_ITERATE(group, orders[i], H5_ITER_INC, &position, collect_link, &list);
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

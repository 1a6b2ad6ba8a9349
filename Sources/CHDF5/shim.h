#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

/* Small wrappers for what Swift cannot import from hdf5.h (macros that expand to function
 * calls), for the writers and the .keras image. The reader's own wrappers are in
 * Sources/CHDF5Scan, shared with the small worker executable. */

static inline hid_t zoo_h5_native_float(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t zoo_h5_ieee_f32le(void) { return H5T_IEEE_F32LE; }
static inline unsigned zoo_h5_acc_rdonly(void) { return H5F_ACC_RDONLY; }

/* For the Keras writers: file-creation flags and the C string type are macros that call
 * into the library, which Swift cannot import. */
static inline unsigned zoo_h5_acc_excl(void) { return H5F_ACC_EXCL; }
static inline hid_t zoo_h5_c_s1(void) { return H5T_C_S1; }

/* Opens an HDF5 file held in memory (a .keras archive's model.weights.h5) read-only,
 * without copying it: the caller keeps `image` alive until H5Fclose. */
#include <hdf5_hl.h>
static inline hid_t zoo_h5_open_image(void *image, size_t size) {
    return H5LTopen_file_image(image, size, H5LT_FILE_IMAGE_DONT_COPY | H5LT_FILE_IMAGE_DONT_RELEASE);
}

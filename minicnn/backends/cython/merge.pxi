# ----------------------------------------------------------------------------- merges
# Add's sum and Concatenate's join and split (reference/merge.py), in parallel over rows.

def add(real[::1] a, real[::1] b, real[::1] out):
    cdef Py_ssize_t i
    for i in prange(a.shape[0], nogil=True, schedule="static"):
        out[i] = a[i] + b[i]


def join_or_split(real[:, :, ::1] whole, real[:, :, ::1] a, real[:, :, ::1] b, bint join):
    """whole (M, Ca+Cb, K) is a (M, Ca, K) then b (M, Cb, K) along axis 1: ``join`` writes
    whole from a and b (concatenate_forward), else a and b from whole (its backward)."""
    cdef Py_ssize_t m, c, k, ca = a.shape[1]
    for m in prange(whole.shape[0], nogil=True, schedule="static"):
        for c in range(whole.shape[1]):
            for k in range(whole.shape[2]):
                if join and c < ca:
                    whole[m, c, k] = a[m, c, k]
                elif join:
                    whole[m, c, k] = b[m, c - ca, k]
                elif c < ca:
                    a[m, c, k] = whole[m, c, k]
                else:
                    b[m, c - ca, k] = whole[m, c, k]

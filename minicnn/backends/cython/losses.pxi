# ----------------------------------------------------------------------------- loss


def softmax_cross_entropy(real[:, ::1] z, real[:, ::1] y, double[:, ::1] summary,
                          real[:, ::1] dz):
    """Per row: summary[0, r] = logsumexp(z_r) - <y_r, z_r>, summary[1, r] = 1 if the top
    logit (the first, on ties) is the true class (the accuracy, same pass);
    dz = (softmax(z) - y) / N."""
    cdef Py_ssize_t n = z.shape[0], k = z.shape[1], r, j, best, best_y
    cdef double top, total, log_total, loss
    with nogil:
        for r in range(n):
            best, best_y = 0, 0
            for j in range(1, k):
                if z[r, j] > z[r, best]:
                    best = j
                if y[r, j] > y[r, best_y]:
                    best_y = j
            top = z[r, best]
            total = 0
            for j in range(k):
                total += exp(z[r, j] - top)
            log_total = log(total) + top
            loss = 0
            for j in range(k):
                loss += y[r, j] * (log_total - z[r, j])
                dz[r, j] = (exp(z[r, j] - log_total) - y[r, j]) / n
            summary[0, r] = loss
            if k == 1:
                summary[1, r] = (z[r, 0] > 0) == (y[r, 0] > 0.5)
            else:
                summary[1, r] = best == best_y



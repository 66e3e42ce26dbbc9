/* Exact integer sums over one 8-bit RGB analysis image, for analyzer/pixels.py.
 *
 * Plain C (no Python headers), loaded with ctypes. Every output is an exact integer sum, so
 * this and the numpy implementation in analyzer/pixels.py produce the same numbers; the
 * features are computed from them in one place (analyzer/images.py). Definitions:
 *
 *   luma     (R*19595 + G*38470 + B*7471 + 0x8000) >> 16, Pillow's RGB -> L conversion
 *   hist     256-bin histograms of R, G, B and luma, in that order (1024 counts)
 *   lap      4-neighbour Laplacian of luma over the interior pixels (rows/cols 1..n-2)
 *   noise    |[1 -2 1] (x) [1 -2 1] * luma| over the interior (Immerkaer 1996)
 *   col[j]   sum over rows of |luma[i][j+1] - luma[i][j]|, j = 0..w-2
 *   row[i]   sum over columns of |luma[i+1][j] - luma[i][j]|, i = 0..h-2
 *   haar     over the even-sized crop: sum of luma, of luma^2, of (2x2 block sum)^2
 *   colour   over box x box means of R, G, B rounded as Pillow's Image.reduce(box) rounds
 *            them (partial boxes at the right and bottom edges included): sums of r-g,
 *            (r-g)^2, r+g-2b, (r+g-2b)^2, the box count, and sat[v] = the sum of max-min
 *            over the boxes whose max is v (saturation = sum over v of sat[v] / max(v, 1)).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { LAP_SUM, LAP_SQ, NOISE_ABS, HAAR_SUM, HAAR_SQ, HAAR_BLOCK_SQ, RG_SUM, RG_SQ, YB_SUM,
       YB_SQ, BOXES, N_INTS };

/* Bounds that keep the int32 running sums exact: per row, |Immerkaer| <= 4080 * MAX_WIDTH;
   per column, |step| <= 255 * MAX_HEIGHT. Larger images go to the numpy implementation. */
#define MAX_WIDTH 8192
#define MAX_HEIGHT (1 << 22)

static inline int32_t iabs(int32_t v) { return v < 0 ? -v : v; }

/* Pillow's division_UINT32(n, 8): the reciprocal it multiplies box sums by. */
static uint32_t box_multiplier(uint32_t n) {
    float max_int = 4294967296.0f;
    return (uint32_t)(max_int / (float)(256u * n));
}

static inline void colour_boxes(const uint8_t *rgb, const int64_t ps, int64_t h, int64_t w,
                                int64_t box, int64_t *ints, int64_t *sat, uint32_t *work) {
    uint32_t *sr = work, *sg = work + w, *sb = work + 2 * w;  /* one box column each */
    int64_t nbw = (w + box - 1) / box;
    memset(sat, 0, sizeof(int64_t) * 256);
    int64_t rg = 0, rg2 = 0, yb = 0, yb2 = 0, boxes = 0;
    for (int64_t y0 = 0; y0 < h; y0 += box) {
        int64_t bh = h - y0 < box ? h - y0 : box;
        memset(sr, 0, sizeof(uint32_t) * nbw);
        memset(sg, 0, sizeof(uint32_t) * nbw);
        memset(sb, 0, sizeof(uint32_t) * nbw);
        for (int64_t y = y0; y < y0 + bh; y++) {
            const uint8_t *p = rgb + (size_t)y * w * ps;
            int64_t bj = 0, x0 = 0;
            if (box == 4) {  /* the usual case, unrolled */
                for (; x0 + 4 <= w; bj++, x0 += 4) {
                    const uint8_t *q = p + ps * x0;
                    sr[bj] += (uint32_t)q[0] + q[ps] + q[2 * ps] + q[3 * ps];
                    sg[bj] += (uint32_t)q[1] + q[ps + 1] + q[2 * ps + 1] + q[3 * ps + 1];
                    sb[bj] += (uint32_t)q[2] + q[ps + 2] + q[2 * ps + 2] + q[3 * ps + 2];
                }
            }
            for (; x0 < w; bj++, x0 += box) {
                int64_t x1 = x0 + box < w ? x0 + box : w;
                uint32_t r = 0, g = 0, b = 0;
                for (int64_t x = x0; x < x1; x++) {
                    r += p[ps * x];
                    g += p[ps * x + 1];
                    b += p[ps * x + 2];
                }
                sr[bj] += r;
                sg[bj] += g;
                sb[bj] += b;
            }
        }
        for (int64_t bj = 0; bj < nbw; bj++) {
            int64_t bw = w - bj * box < box ? w - bj * box : box;
            uint32_t n = (uint32_t)(bh * bw), mult = box_multiplier(n), amend = n / 2;
            int32_t r = (int32_t)(((sr[bj] + amend) * mult) >> 24);
            int32_t g = (int32_t)(((sg[bj] + amend) * mult) >> 24);
            int32_t b = (int32_t)(((sb[bj] + amend) * mult) >> 24);
            int32_t hi = r > g ? r : g, lo = r < g ? r : g;
            hi = hi > b ? hi : b;
            lo = lo < b ? lo : b;
            sat[hi] += hi - lo;
            int32_t d = r - g, e = r + g - 2 * b;
            rg += d;
            rg2 += (int64_t)d * d;
            yb += e;
            yb2 += (int64_t)e * e;
            boxes++;
        }
    }
    ints[RG_SUM] = rg;
    ints[RG_SQ] = rg2;
    ints[YB_SUM] = yb;
    ints[YB_SQ] = yb2;
    ints[BOXES] = boxes;
}

/* Luma of every pixel into luma[], and the R, G, B and luma histograms into hist[1024]. */
static inline void histograms(const uint8_t *rgb, const int64_t ps, int64_t h, int64_t w,
                              uint8_t *luma, int64_t *hist) {
    /* Two tables per histogram, for even and odd pixels: equal neighbours (common in
       smooth images) would otherwise wait on each other's increments. */
    uint32_t tab[8][256];
    memset(tab, 0, sizeof tab);
    for (int64_t i = 0; i < h; i++) {
        const uint8_t *p = rgb + (size_t)i * w * ps;
        uint8_t *l = luma + (size_t)i * w;
        int64_t j = 0;
        for (; j + 1 < w; j += 2) {
            uint32_t r0 = p[ps * j], g0 = p[ps * j + 1], b0 = p[ps * j + 2];
            uint32_t r1 = p[ps * j + ps], g1 = p[ps * j + ps + 1], b1 = p[ps * j + ps + 2];
            uint32_t l0 = (r0 * 19595u + g0 * 38470u + b0 * 7471u + 0x8000u) >> 16;
            uint32_t l1 = (r1 * 19595u + g1 * 38470u + b1 * 7471u + 0x8000u) >> 16;
            l[j] = (uint8_t)l0;
            l[j + 1] = (uint8_t)l1;
            tab[0][r0]++; tab[1][g0]++; tab[2][b0]++; tab[3][l0]++;
            tab[4][r1]++; tab[5][g1]++; tab[6][b1]++; tab[7][l1]++;
        }
        if (j < w) {
            uint32_t r0 = p[ps * j], g0 = p[ps * j + 1], b0 = p[ps * j + 2];
            uint32_t l0 = (r0 * 19595u + g0 * 38470u + b0 * 7471u + 0x8000u) >> 16;
            l[j] = (uint8_t)l0;
            tab[0][r0]++; tab[1][g0]++; tab[2][b0]++; tab[3][l0]++;
        }
    }
    for (int c = 0; c < 4; c++)
        for (int v = 0; v < 256; v++) hist[256 * c + v] = (int64_t)tab[c][v] + tab[4 + c][v];
}

/* rgb: h rows of w pixels of ps (3: RGB, 4: RGBX) bytes. Returns 0; -1 when the image is
   smaller than 3x3, wider than MAX_WIDTH or taller than MAX_HEIGHT, or the pixel size or box is out of range; -2 when
   memory runs out. */
int driftd_pixel_sums(const uint8_t *rgb, int64_t ps, int64_t h, int64_t w, int64_t box,
                      uint8_t *luma, int64_t *hist, int64_t *ints, int64_t *col, int64_t *row,
                      int64_t *sat) {
    if (h < 3 || w < 3 || w > MAX_WIDTH || h > MAX_HEIGHT || box < 1 || box > 16 || (ps != 3 && ps != 4))
        return -1;
    if (ps == 4)
        histograms(rgb, 4, h, w, luma, hist);
    else
        histograms(rgb, 3, h, w, luma, hist);

    int64_t lap_sum = 0, lap_sq = 0, noise = 0;
    for (int64_t i = 1; i < h - 1; i++) {
        const uint8_t *a = luma + (size_t)(i - 1) * w, *b = a + w, *c = b + w;
        int32_t t1 = 0, t3 = 0;
        int64_t t2 = 0;
        for (int64_t j = 1; j < w - 1; j++) {
            int32_t x = b[j];
            int32_t lap = a[j] + c[j] + b[j - 1] + b[j + 1] - 4 * x;
            int32_t im = a[j - 1] - 2 * a[j] + a[j + 1] - 2 * (b[j - 1] - 2 * x + b[j + 1])
                         + c[j - 1] - 2 * c[j] + c[j + 1];
            t1 += lap;
            t2 += (int64_t)(lap * lap);
            t3 += iabs(im);
        }
        lap_sum += t1;
        lap_sq += t2;
        noise += t3;
    }
    ints[LAP_SUM] = lap_sum;
    ints[LAP_SQ] = lap_sq;
    ints[NOISE_ABS] = noise;

    /* Row-sized work space, on the heap: a thread's stack may be small (musl: 128 KB). */
    uint32_t *work = malloc(sizeof(uint32_t) * 3 * (size_t)w);
    int32_t *steps = malloc(sizeof(int32_t) * (size_t)w);
    uint16_t *pairs = malloc(sizeof(uint16_t) * (size_t)w);
    if (work == NULL || steps == NULL || pairs == NULL) {
        free(work);
        free(steps);
        free(pairs);
        return -2;
    }
    memset(steps, 0, sizeof(int32_t) * w);
    for (int64_t i = 0; i < h; i++) {
        const uint8_t *b = luma + (size_t)i * w;
        for (int64_t j = 0; j < w - 1; j++) steps[j] += iabs(b[j + 1] - b[j]);
        if (i < h - 1) {
            const uint8_t *c = b + w;
            int32_t t = 0;
            for (int64_t j = 0; j < w; j++) t += iabs(c[j] - b[j]);
            row[i] = t;
        }
    }
    for (int64_t j = 0; j < w - 1; j++) col[j] = steps[j];

    /* Luma sum and sum of squares over the even-sized crop: the whole image's, from the
       luma histogram, less the odd last row and column. */
    int64_t hsum = 0, hsq = 0, hblock = 0, he = h & ~(int64_t)1, we = w & ~(int64_t)1;
    for (int v = 0; v < 256; v++) {
        hsum += hist[768 + v] * v;
        hsq += hist[768 + v] * v * v;
    }
    if (he < h)
        for (int64_t j = 0; j < w; j++) {
            int64_t v = luma[(size_t)(h - 1) * w + j];
            hsum -= v;
            hsq -= v * v;
        }
    if (we < w)
        for (int64_t i = 0; i < he; i++) {
            int64_t v = luma[(size_t)i * w + w - 1];
            hsum -= v;
            hsq -= v * v;
        }
    for (int64_t i = 0; i < he; i += 2) {
        const uint8_t *a = luma + (size_t)i * w, *b = a + w;
        for (int64_t j = 0; j < w; j++) pairs[j] = (uint16_t)(a[j] + b[j]);
        int64_t s4 = 0;  /* up to 4096 blocks of 1020^2: past int32 */
        for (int64_t j = 0; j < we; j += 2) {
            int32_t blk = pairs[j] + pairs[j + 1];
            s4 += blk * blk;
        }
        hblock += s4;
    }
    ints[HAAR_SUM] = hsum;
    ints[HAAR_SQ] = hsq;
    ints[HAAR_BLOCK_SQ] = hblock;

    if (ps == 4)
        colour_boxes(rgb, 4, h, w, box, ints, sat, work);
    else
        colour_boxes(rgb, 3, h, w, box, ints, sat, work);
    free(work);
    free(steps);
    free(pairs);
    return 0;
}

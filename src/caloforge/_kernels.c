/* caloforge's compiled loops: transport of tracks to the EMC barrel front faces, and placement of the
 * 11 x 11 shower maps into the barrel.
 *
 * Plain C functions over flat arrays, called from Python through ctypes (caloforge/_compiled.py, which
 * also documents the arguments); the module object Python imports is empty. The algorithms and their
 * constants are described in caloforge/detector/transport.py and caloforge/engine/fastsim.py: these are
 * their loops, track by track and shower by shower, with numpy's floating-point rules (no fast-math).
 *
 * Units: cm, GeV/c, rad. Crystal cells are theta_index * 120 + phi_index.
 */
#define PY_SSIZE_T_CLEAN
#define _USE_MATH_DEFINES /* M_PI, M_SQRT2 with MSVC */
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif
#ifndef M_SQRT2
#define M_SQRT2 1.41421356237309504880
#endif

/* the functions ctypes calls: exported from the module's shared library on every platform */
#if defined(_WIN32)
#define CF_EXPORT __declspec(dllexport)
#else
#define CF_EXPORT __attribute__((visibility("default")))
#endif

#define N_THETA 44
#define N_PHI 120
#define WINDOW 11

static inline double dot3(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }

static inline double plane_offset(const double *normal, const double *point, const double *pos)
{
    return normal[0] * (pos[0] - point[0]) + normal[1] * (pos[1] - point[1]) + normal[2] * (pos[2] - point[2]);
}

static inline int64_t mod_phi(int64_t k) { return ((k % N_PHI) + N_PHI) % N_PHI; }

/* Position and unit direction after path s on the helix from x0 along u0 turning by omega rad/cm (a straight
 * line for omega = 0). The transverse direction turns by 2h = omega s; the chord, of length u_T s sin(h) / h,
 * points along the direction turned by h (stable for small h, exact at 0). */
static void helix_point(const double *x0, const double *u0, double omega, double s, double *pos, double *dir)
{
    double half = 0.5 * omega * s, sh = sin(half), ch = cos(half);
    double chord = s * (half != 0.0 ? sh / half : 1.0);
    double ux = u0[0], uy = u0[1];
    double c2 = 1.0 - 2.0 * sh * sh, s2 = 2.0 * sh * ch;
    pos[0] = x0[0] + chord * (ux * ch + uy * sh);
    pos[1] = x0[1] + chord * (uy * ch - ux * sh);
    pos[2] = x0[2] + u0[2] * s;
    dir[0] = ux * c2 + uy * s2;
    dir[1] = uy * c2 - ux * s2;
    dir[2] = u0[2];
}

/* Path to the first crossing of the cylinder r = radius; NaN if none. */
static double cylinder_path(const double *x0, const double *u0, double omega, double radius)
{
    double ux = u0[0], uy = u0[1], ut = hypot(ux, uy);
    if (omega == 0.0) { /* straight line: |x0 + u s|^2 = R^2 in the transverse plane */
        double b = x0[0] * ux + x0[1] * uy;
        double disc = b * b - ut * ut * (x0[0] * x0[0] + x0[1] * x0[1] - radius * radius);
        return (disc >= 0.0 && ut > 0.0) ? (-b + sqrt(disc)) / (ut * ut) : NAN;
    }
    /* circle of radius a = ut / omega (signed) around C = x0 + a (sin phi0, -cos phi0) */
    double phi0 = atan2(uy, ux), a = ut / omega;
    double cx = x0[0] + a * sin(phi0), cy = x0[1] - a * cos(phi0), cnorm = hypot(cx, cy);
    double q = (radius * radius - cnorm * cnorm - a * a) / (2.0 * a * cnorm);
    if (!(fabs(q) <= 1.0))
        return NAN;
    double gamma = atan2(cy, cx), asin_q = asin(q), sgn = omega > 0 ? 1.0 : -1.0;
    double psi[2] = {gamma - asin_q, gamma - (M_PI - asin_q)}, best = INFINITY;
    for (int j = 0; j < 2; j++) {
        double turn = fmod((phi0 - psi[j]) * sgn, 2.0 * M_PI);
        if (turn < 0)
            turn += 2.0 * M_PI;
        turn /= fabs(omega);
        if (turn < best)
            best = turn;
    }
    return best;
}

/* Newton steps from path *s (pos, dir: the helix there, updated in place) to the plane through point with
 * normal, each to the crossing of the tangent, until within tolerance of the plane or max_steps are made.
 * Returns whether the point is within tolerance of the plane. */
static int newton_to_plane(const double *x0, const double *u0, double omega, const double *normal,
                           const double *point, double *s, double *pos, double *dir, int max_steps,
                           double tolerance)
{
    for (int step = 0; step < max_steps; step++) {
        double off = plane_offset(normal, point, pos);
        if (!(fabs(off) >= tolerance)) /* also stops at NaN, which stays unconverged */
            break;
        *s -= off / dot3(normal, dir);
        helix_point(x0, u0, omega, *s, pos, dir);
    }
    return fabs(plane_offset(normal, point, pos)) < tolerance;
}

/* How far inside the front face of cell the projection of pos lies (cm; negative outside). */
static double face_score(const double *pos, const double *edge_normals, const double *edge_offsets, int64_t cell)
{
    double best = INFINITY;
    for (int j = 0; j < 4; j++) {
        double d = dot3(edge_normals + (cell * 4 + j) * 3, pos) - edge_offsets[cell * 4 + j];
        if (d < best)
            best = d;
    }
    return best;
}

/* Nearest crystal by polar angle and azimuth of the front-face centres (NaN coordinates count as 0). */
static void guess_crystal(const double *pos, const double *ring_theta, const double *ring_phi0, int64_t *ring,
                          int64_t *k)
{
    double x = isnan(pos[0]) ? 0.0 : pos[0], y = isnan(pos[1]) ? 0.0 : pos[1], z = isnan(pos[2]) ? 0.0 : pos[2];
    double theta = atan2(hypot(x, y), z);
    int64_t r = 0;
    while (r < N_THETA && ring_theta[r] < theta) /* first ring at or beyond theta */
        r++;
    r = r < 1 ? 1 : (r > N_THETA - 1 ? N_THETA - 1 : r);
    if (theta - ring_theta[r - 1] < ring_theta[r] - theta)
        r--;
    *ring = r;
    *k = mod_phi((int64_t)rint((atan2(y, x) - ring_phi0[r]) / (2.0 * M_PI / N_PHI)));
}

/* The crystal front face each track crosses first (see caloforge.detector.transport.propagate_to_front).
 * params: guess radius, Newton steps, plane tolerance, clear-hit slack, prune slack, prune bend, gap and side
 * tolerances. hit is set for every track; the other outputs are meaningful where hit is 1 (for a miss they may
 * hold its nearest candidate face: the caller masks them). */
CF_EXPORT void cf_propagate(int64_t n, const double *x0s, const double *u0s, const double *omegas, const double *axis,
                            const double *centre, const double *edge_normals, const double *edge_offsets,
                            const double *depth, const double *face_radius, const double *ring_theta,
                            const double *ring_phi0, const int64_t *offsets, int64_t n_offsets, const double *params,
                            uint8_t *hit, double *path, int64_t *theta_index, int64_t *phi_index, double *position,
                            double *direction)
{
    double guess_r = params[0], tol = params[2], clear_slack = params[3], prune_slack = params[4];
    double max_bend = params[5], gap_tol = params[6], side_tol = params[7];
    int max_steps = (int)params[1];
    for (int64_t i = 0; i < n; i++) {
        const double *x0 = x0s + 3 * i, *u0 = u0s + 3 * i;
        double omega = omegas[i], pos[3], dir[3];
        hit[i] = 0;
        double s_guess = cylinder_path(x0, u0, omega, guess_r);
        if (!isfinite(s_guess))
            continue;
        /* first guess where the track crosses r = 95 cm, refined on the plane of that crystal's face */
        helix_point(x0, u0, omega, s_guess, pos, dir);
        int64_t t0, k0;
        guess_crystal(pos, ring_theta, ring_phi0, &t0, &k0);
        int64_t cell0 = t0 * N_PHI + k0;
        const double *n0 = axis + 3 * cell0;
        double s1 = s_guess;
        int on_plane = newton_to_plane(x0, u0, omega, n0, centre + 3 * cell0, &s1, pos, dir, max_steps, tol);
        if (!isfinite(s1)) { /* no crossing: the search starts from the cylinder point */
            s1 = s_guess;
            helix_point(x0, u0, omega, s1, pos, dir);
        }
        /* A track that crosses its first-guess face well inside the edges hits it first: no neighbouring face,
         * at most depth in front along the axis, can be reached by a track that drifts sideways by less than
         * that depth times tan(angle to the axis) before it gets here. */
        double cos_axis = fmin(fmax(fabs(dot3(n0, dir)), 1e-6), 1.0);
        double drift = depth[cell0] * sqrt(1.0 - cos_axis * cos_axis) / cos_axis;
        if (on_plane && s1 > 0 && face_score(pos, edge_normals, edge_offsets, cell0) > drift + clear_slack) {
            hit[i] = 1, path[i] = s1, theta_index[i] = t0, phi_index[i] = k0;
            memcpy(position + 3 * i, pos, sizeof pos);
            memcpy(direction + 3 * i, dir, sizeof dir);
            continue;
        }
        /* The first face crossed among the crystals around the point: each candidate starts from the crossing
         * of the tangent with its plane. One whose tangent crossing lies so far from its face centre that the
         * helix crossing, which bends away from it by at most step^2 |omega| / 2 (times 1 + 1 / cos within the
         * plane; twice that as the margin, sqrt(2) for the corners), is more than side_tol outside the face can
         * be neither entered nor the nearest face: dropped before the Newton steps. */
        int64_t tg, kg;
        guess_crystal(pos, ring_theta, ring_phi0, &tg, &kg);
        int found_first = 0;
        double first_s = INFINITY, near_score = -INFINITY;
        for (int64_t c = 0; c < n_offsets; c++) {
            int64_t t = tg + offsets[2 * c];
            if (t < 0 || t >= N_THETA)
                continue;
            int64_t k = mod_phi(kg + offsets[2 * c + 1]), cell = t * N_PHI + k;
            const double *nc = axis + 3 * cell, *pc = centre + 3 * cell;
            double along = dot3(nc, dir), step = -plane_offset(nc, pc, pos) / along;
            if (!isfinite(step))
                continue;
            double far2 = 0.0;
            for (int a = 0; a < 3; a++) {
                double d = pos[a] + step * dir[a] - pc[a];
                far2 += d * d;
            }
            double bend = step * step * fabs(omega) * (1.0 + 1.0 / fabs(along));
            double reach = face_radius[cell] + M_SQRT2 * (side_tol + prune_slack + bend);
            if (bend < max_bend && far2 > reach * reach)
                continue;
            double s_c = s1 + step, pos_c[3], dir_c[3];
            helix_point(x0, u0, omega, s_c, pos_c, dir_c);
            if (!newton_to_plane(x0, u0, omega, nc, pc, &s_c, pos_c, dir_c, max_steps, tol) || !(s_c > 0))
                continue;
            double score = face_score(pos_c, edge_normals, edge_offsets, cell);
            int better_first = score > -gap_tol && s_c < first_s;
            if (better_first || (!found_first && score > near_score)) {
                path[i] = s_c, theta_index[i] = t, phi_index[i] = k;
                memcpy(position + 3 * i, pos_c, sizeof pos_c);
                memcpy(direction + 3 * i, dir_c, sizeof dir_c);
            }
            if (better_first)
                found_first = 1, first_s = s_c;
            if (score > near_score)
                near_score = score;
        }
        hit[i] = found_first || near_score > -side_tol;
    }
}

CF_EXPORT void cf_helix_points(int64_t n, const double *x0s, const double *u0s, const double *omegas,
                               const double *paths, double *position, double *direction)
{
    for (int64_t i = 0; i < n; i++)
        helix_point(x0s + 3 * i, u0s + 3 * i, omegas[i], paths[i], position + 3 * i, direction + 3 * i);
}

CF_EXPORT void cf_cylinder_paths(int64_t n, const double *x0s, const double *u0s, const double *omegas,
                                 double radius, double *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = cylinder_path(x0s + 3 * i, u0s + 3 * i, omegas[i], radius);
}

/* ---- placement ------------------------------------------------------------------------------------------ */

CF_EXPORT int64_t cf_count_positive(int64_t n, const float *values)
{
    int64_t count = 0;
    for (int64_t j = 0; j < n; j++)
        count += values[j] > 0;
    return count;
}

/* The crystals with energy of one map (11 x 11) around crystal (t0, k0), from position n of the outputs, in
 * increasing cell; returns the next free position. Rows beyond the barrel ends are dropped; in a row whose
 * columns wrap in phi, the wrapped crystals (0, 1, ... or ..., 118, 119) are written in their place. */
static int64_t shower_deposits(const float *map, int64_t t0, int64_t k0, int64_t event, int64_t *ev,
                               int64_t *cell, float *energy, int64_t n)
{
    const int64_t half = WINDOW / 2;
    int64_t first = mod_phi(half - k0); /* the column that lands on phi = 0, if it lies in the window */
    int64_t start = first < WINDOW ? first : 0;
    for (int64_t r = 0; r < WINDOW; r++) {
        int64_t t = t0 + r - half;
        if (t < 0 || t >= N_THETA)
            continue;
        for (int64_t j = 0; j < WINDOW; j++) {
            int64_t c = start + j < WINDOW ? start + j : start + j - WINDOW;
            float e = map[r * WINDOW + c];
            if (e > 0) {
                int64_t k = k0 + c - half;
                k = k < 0 ? k + N_PHI : (k >= N_PHI ? k - N_PHI : k);
                ev[n] = event, cell[n] = t * N_PHI + k, energy[n] = e;
                n++;
            }
        }
    }
    return n;
}

/* Merge the sorted runs [bounds[r], bounds[r + 1]) of (cell, energy), r < n_runs, pairwise (stably) until one
 * run is left; returns the buffer that holds it (cell_a/energy_a or cell_b/energy_b). */
static void merge_runs(int64_t *bounds, int64_t n_runs, int64_t *cell_a, float *energy_a, int64_t *cell_b,
                       float *energy_b, int64_t **cell_out, float **energy_out)
{
    int64_t *src_c = cell_a, *dst_c = cell_b;
    float *src_e = energy_a, *dst_e = energy_b;
    while (n_runs > 1) {
        int64_t merged = 0;
        for (int64_t r = 0; r < n_runs; r += 2) {
            int64_t i = bounds[r], mid = bounds[r + 1], end = r + 1 < n_runs ? bounds[r + 2] : mid, j = mid, w = i;
            while (i < mid || j < end) {
                int64_t from = (j >= end || (i < mid && src_c[i] <= src_c[j])) ? i++ : j++;
                dst_c[w] = src_c[from], dst_e[w] = src_e[from];
                w++;
            }
            bounds[merged++] = bounds[r];
        }
        bounds[merged] = bounds[n_runs];
        n_runs = merged;
        int64_t *tc = src_c;
        float *te = src_e;
        src_c = dst_c, src_e = dst_e, dst_c = tc, dst_e = te;
    }
    *cell_out = src_c, *energy_out = src_e;
}

/* Deposits of the maps placed around their centre crystals and summed crystal by crystal within each event,
 * sorted by event then cell. order: the showers sorted by event index (stably). The outputs hold at least
 * cf_count_positive(maps) entries. The deposits of each shower come out sorted by cell (shower_deposits); an
 * event with several showers has its runs merged, then repeated cells added up. Returns the number written,
 * or -1 if memory ran out. */
CF_EXPORT int64_t cf_place_showers(int64_t n_showers, const float *maps, const int64_t *theta, const int64_t *phi,
                                   const int64_t *event_index, const int64_t *order, int64_t *ev, int64_t *cell,
                                   float *energy)
{
    int64_t n = 0, a = 0, capacity = 0, run_capacity = 0;
    int64_t *scratch_cell = NULL, *bounds = NULL;
    float *scratch_energy = NULL;
    int64_t status = 0;
    while (a < n_showers) {
        int64_t b = a + 1, start = n;
        while (b < n_showers && event_index[order[b]] == event_index[order[a]])
            b++;
        if (b - a + 1 > run_capacity) {
            int64_t *grown = realloc(bounds, (size_t)(b - a + 1) * sizeof(int64_t));
            if (grown == NULL) {
                status = -1;
                break;
            }
            bounds = grown, run_capacity = b - a + 1;
        }
        for (int64_t j = a; j < b; j++) {
            int64_t i = order[j];
            bounds[j - a] = n - start;
            n = shower_deposits(maps + i * WINDOW * WINDOW, theta[i], phi[i], event_index[i], ev, cell, energy, n);
        }
        bounds[b - a] = n - start;
        int64_t m = n - start;
        if (b - a > 1 && m > 0) { /* several showers: merge their sorted runs, add up repeated cells */
            if (m > capacity) {
                int64_t *gc = realloc(scratch_cell, (size_t)m * sizeof(int64_t));
                if (gc != NULL)
                    scratch_cell = gc;
                float *ge = realloc(scratch_energy, (size_t)m * sizeof(float));
                if (ge != NULL)
                    scratch_energy = ge;
                if (gc == NULL || ge == NULL) {
                    status = -1;
                    break;
                }
                capacity = m;
            }
            int64_t *sorted_cell;
            float *sorted_energy;
            merge_runs(bounds, b - a, cell + start, energy + start, scratch_cell, scratch_energy, &sorted_cell,
                       &sorted_energy);
            int64_t w = start;
            for (int64_t j = 0; j < m; j++) {
                if (j > 0 && sorted_cell[j] == cell[w - 1]) {
                    energy[w - 1] += sorted_energy[j];
                } else {
                    cell[w] = sorted_cell[j], energy[w] = sorted_energy[j];
                    w++;
                }
            }
            n = w;
        }
        a = b;
    }
    free(scratch_cell);
    free(scratch_energy);
    free(bounds);
    return status < 0 ? status : n;
}

/* ---- the module Python imports (its file is what ctypes loads) ------------------------------------------- */

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_kernels",
    .m_doc = "caloforge's compiled loops, called through ctypes by caloforge._compiled",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }

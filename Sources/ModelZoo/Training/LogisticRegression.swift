import Foundation

/// Multinomial logistic regression fitted by L-BFGS on a whole feature matrix: the convex
/// problem a new head on frozen features is. Unlike SGD it has no learning rate or epoch
/// count to get wrong; the one knob, the L2 strength, is picked on the validation split.
///
/// The objective is scikit-learn's (`LogisticRegression(C=...)`, multinomial, lbfgs) divided
/// by C*n, which has the same minimiser:
///     mean over rows of cross-entropy(softmax(W x + b), y) + (1 / (2 C n)) * ||W||^2
/// with the intercept b not penalised. Everything is computed in Double: the problem is
/// small and the peer check compares objective values to a few significant digits.
public struct LogisticRegression {
    /// Rows of standardised features with their labels.
    public struct Problem {
        public let rows: Int
        public let dimension: Int
        public let classes: Int
        /// rows x dimension, row-major.
        public let x: [Double]
        public let y: [Int]

        public init(rows: Int, dimension: Int, classes: Int, x: [Double], y: [Int]) {
            self.rows = rows; self.dimension = dimension; self.classes = classes; self.x = x; self.y = y
        }

        /// Parameters: W as classes x dimension, row-major, then b.
        public var parameterCount: Int { classes * dimension + classes }
    }

    /// Objective and gradient at `theta` for L2 strength `lambda` (= 1 / (C n)).
    public static func objective(_ theta: [Double], _ p: Problem, lambda: Double) -> (value: Double, gradient: [Double]) {
        let k = p.classes, d = p.dimension
        var gradient = [Double](repeating: 0, count: p.parameterCount)
        var loss = 0.0
        var logits = [Double](repeating: 0, count: k)
        theta.withUnsafeBufferPointer { t in
            p.x.withUnsafeBufferPointer { x in
                gradient.withUnsafeMutableBufferPointer { g in
                    for r in 0..<p.rows {
                        let row = r * d
                        var top = -Double.infinity
                        for j in 0..<k {
                            var s = t[k * d + j]
                            let w = j * d
                            for i in 0..<d { s += t[w + i] * x[row + i] }
                            logits[j] = s
                            top = max(top, s)
                        }
                        var sum = 0.0
                        for j in 0..<k { logits[j] = exp(logits[j] - top); sum += logits[j] }
                        let label = p.y[r]
                        loss += log(sum) - log(logits[label])
                        for j in 0..<k {
                            // d(loss)/d(logit j) = softmax_j - [j == label], averaged over rows.
                            let delta = (logits[j] / sum - (j == label ? 1 : 0)) / Double(p.rows)
                            g[k * d + j] += delta
                            let gw = j * d
                            for i in 0..<d { g[gw + i] += delta * x[row + i] }
                        }
                    }
                }
            }
        }
        var penalty = 0.0
        for i in 0..<(k * d) {
            penalty += theta[i] * theta[i]
            gradient[i] += lambda * theta[i]
        }
        return (loss / Double(max(p.rows, 1)) + 0.5 * lambda * penalty, gradient)
    }

    /// Mean cross-entropy and accuracy of `theta` on a problem (no penalty).
    public static func score(_ theta: [Double], _ p: Problem) -> (loss: Double, accuracy: Double) {
        guard p.rows > 0 else { return (0, 0) }
        let k = p.classes, d = p.dimension
        var loss = 0.0, correct = 0
        var logits = [Double](repeating: 0, count: k)
        for r in 0..<p.rows {
            var top = -Double.infinity, best = 0
            for j in 0..<k {
                var s = theta[k * d + j]
                for i in 0..<d { s += theta[j * d + i] * p.x[r * d + i] }
                logits[j] = s
                if s > top { top = s; best = j }
            }
            var sum = 0.0
            for j in 0..<k { sum += exp(logits[j] - top) }
            loss += log(sum) - (logits[p.y[r]] - top)
            if best == p.y[r] { correct += 1 }
        }
        return (loss / Double(p.rows), Double(correct) / Double(p.rows))
    }

    public struct Minimum {
        public let theta: [Double]
        public let value: Double
        public let iterations: Int
        /// The largest gradient component fell below the tolerance (rather than the
        /// iteration limit or a line search that could not improve stopping the run).
        public let converged: Bool
    }

    /// L-BFGS (two-loop recursion, the last `memory` steps) with a backtracking line search
    /// on the Armijo condition. Stops when the largest gradient component is at most
    /// `gradientTolerance`, or after `maxIterations`.
    public static func minimize(from start: [Double], memory: Int = 10, maxIterations: Int = 1000,
                                gradientTolerance: Double = 1e-6,
                                _ f: ([Double]) -> (value: Double, gradient: [Double])) -> Minimum {
        var x = start
        var (fx, g) = f(x)
        var s: [[Double]] = [], y: [[Double]] = [], rho: [Double] = []
        func dot(_ a: [Double], _ b: [Double]) -> Double {
            var total = 0.0
            for i in a.indices { total += a[i] * b[i] }
            return total
        }
        func largest(_ v: [Double]) -> Double { v.reduce(0) { max($0, abs($1)) } }
        var iteration = 0
        while iteration < maxIterations {
            if largest(g) <= gradientTolerance { return Minimum(theta: x, value: fx, iterations: iteration, converged: true) }
            // Two-loop recursion: direction = -H g, with H the L-BFGS inverse Hessian estimate.
            var q = g
            var alpha = [Double](repeating: 0, count: s.count)
            for m in stride(from: s.count - 1, through: 0, by: -1) {
                alpha[m] = rho[m] * dot(s[m], q)
                for i in q.indices { q[i] -= alpha[m] * y[m][i] }
            }
            if let ls = s.last, let ly = y.last {
                let gamma = dot(ls, ly) / max(dot(ly, ly), .leastNormalMagnitude)
                for i in q.indices { q[i] *= gamma }
            } else {
                // No curvature yet: a first step of unit length along -g.
                let norm = dot(g, g).squareRoot()
                for i in q.indices { q[i] /= max(norm, 1e-300) }
            }
            for m in 0..<s.count {
                let beta = rho[m] * dot(y[m], q)
                for i in q.indices { q[i] += s[m][i] * (alpha[m] - beta) }
            }
            var direction = q.map { -$0 }
            var slope = dot(g, direction)
            if slope >= 0 {
                // The estimate lost positive definiteness: restart from steepest descent.
                s.removeAll(); y.removeAll(); rho.removeAll()
                direction = g.map { -$0 }
                slope = dot(g, direction)
            }
            var step = 1.0
            var accepted: (x: [Double], fx: Double, g: [Double])? = nil
            for _ in 0..<60 {
                var candidate = x
                for i in candidate.indices { candidate[i] += step * direction[i] }
                let (fc, gc) = f(candidate)
                if fc.isFinite, fc <= fx + 1e-4 * step * slope {
                    accepted = (candidate, fc, gc)
                    break
                }
                step *= 0.5
            }
            iteration += 1
            guard let next = accepted else {
                // No decrease is possible at machine precision: this is the minimum we can reach.
                return Minimum(theta: x, value: fx, iterations: iteration, converged: largest(g) <= gradientTolerance * 100)
            }
            let sk = zip(next.x, x).map { $0 - $1 }
            let yk = zip(next.g, g).map { $0 - $1 }
            let curvature = dot(sk, yk)
            if curvature > 1e-12 * dot(yk, yk).squareRoot() * dot(sk, sk).squareRoot() {
                s.append(sk); y.append(yk); rho.append(1 / curvature)
                if s.count > memory { s.removeFirst(); y.removeFirst(); rho.removeFirst() }
            }
            let change = fx - next.fx
            x = next.x; fx = next.fx; g = next.g
            if change <= 1e-15 * max(abs(fx), 1) && largest(g) <= gradientTolerance * 100 {
                return Minimum(theta: x, value: fx, iterations: iteration, converged: true)
            }
        }
        return Minimum(theta: x, value: fx, iterations: iteration, converged: largest(g) <= gradientTolerance)
    }
}

/// Fits a new head on cached features as a logistic regression: standardises the features
/// with the training rows' mean and standard deviation, fits one model per C of a short grid
/// (warm-started from the previous, more regularised one), keeps the C with the best
/// validation accuracy (ties: the lower validation loss), and folds the standardisation into
/// the weights so the head is a plain Linear layer on raw features.
public enum HeadFitter {
    /// scikit-learn's C: the inverse L2 strength on the summed loss. Decades around its
    /// default of 1; the peer script Tools/check_head_fit.py uses the same grid.
    public static let defaultGrid: [Double] = [0.001, 0.01, 0.1, 1, 10, 100]

    public struct GridPoint: Sendable {
        public let c: Double
        /// The penalty weight in the mean-loss objective: 1 / (C n).
        public let lambda: Double
        public let iterations: Int
        public let converged: Bool
        /// Objective (mean training cross-entropy plus penalty) at the minimum.
        public let objective: Double
        public let trainLoss: Double
        public let trainAccuracy: Double
        public let validationLoss: Double?
        public let validationAccuracy: Double?

        /// "C 0.1    l2 6.7e-02  iterations 41  loss 0.212  train 96.0%  val 93.3%"
        public var line: String {
            let val = validationAccuracy.map { String(format: "%.1f%%", $0 * 100) } ?? "-"
            let cText = String(format: "%g", c).padding(toLength: 6, withPad: " ", startingAt: 0)
            return String(format: "C %@  l2 %.1e  iterations %d%@  loss %.3f  train %.1f%%  val %@",
                          cText, lambda, iterations, converged ? "" : " (not converged)", objective,
                          trainAccuracy * 100, val)
        }
    }

    public struct Fit {
        public let grid: [GridPoint]
        /// Index into `grid` of the kept fit.
        public let chosen: Int
        /// The head on raw (unstandardised) features: [classes, dimension] and [classes].
        public let weight: [Float]
        public let bias: [Float]
        public let mean: [Double]
        public let scale: [Double]
        public var chosenPoint: GridPoint { grid[chosen] }
    }

    /// Per-feature mean and standard deviation over `rows` (population, as StandardScaler);
    /// constant features get a scale of 1 so they stay 0 rather than dividing by zero.
    public static func standardisation(_ set: FeatureSet, rows: [Int]) -> (mean: [Double], scale: [Double]) {
        let d = set.dimension
        var mean = [Double](repeating: 0, count: d), square = mean
        for r in rows {
            for i in 0..<d { mean[i] += Double(set.values[r * d + i]) }
        }
        for i in 0..<d { mean[i] /= Double(max(rows.count, 1)) }
        for r in rows {
            for i in 0..<d { let v = Double(set.values[r * d + i]) - mean[i]; square[i] += v * v }
        }
        let scale = square.map { (total: Double) -> Double in
            let sd = (total / Double(max(rows.count, 1))).squareRoot()
            return sd < 1e-8 ? 1 : sd
        }
        return (mean, scale)
    }

    static func problem(_ set: FeatureSet, classes: Int, mean: [Double], scale: [Double]) -> LogisticRegression.Problem {
        let rows = set.usableIndices
        let d = set.dimension
        var x = [Double](repeating: 0, count: rows.count * d)
        for (n, r) in rows.enumerated() {
            for i in 0..<d { x[n * d + i] = (Double(set.values[r * d + i]) - mean[i]) / scale[i] }
        }
        return LogisticRegression.Problem(rows: rows.count, dimension: d, classes: classes, x: x, y: rows.map { set.labels[$0] })
    }

    /// Fits the grid and returns every point and the kept head. Without validation rows the
    /// grid cannot be judged, so only C = 1 (scikit-learn's default) is fitted.
    public static func fit(train: FeatureSet, validation: FeatureSet?, classes: Int, grid: [Double] = defaultGrid,
                           report: ((GridPoint) -> Void)? = nil) throws -> Fit {
        let rows = train.usableIndices
        guard !rows.isEmpty else { throw ZooError.invalidArgument("no readable training images") }
        guard classes >= 2 else { throw ZooError.invalidArgument("a head needs at least two classes") }
        guard !grid.isEmpty, grid.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw ZooError.invalidArgument("the C grid must hold positive numbers")
        }
        // The standardised copy is Double: refuse sizes that cannot be held before allocating.
        guard let cells = checkedElementCount([rows.count + (validation?.paths.count ?? 0), train.dimension]),
              cells <= Int.max / 8 else {
            throw ZooError.invalidArgument("\(rows.count) rows of \(train.dimension) features do not fit in memory")
        }
        let (mean, scale) = standardisation(train, rows: rows)
        let trainProblem = problem(train, classes: classes, mean: mean, scale: scale)
        let valProblem = validation.flatMap { $0.usableIndices.isEmpty ? nil : problem($0, classes: classes, mean: mean, scale: scale) }
        let cs = valProblem == nil ? [1.0] : grid.sorted()
        var theta = [Double](repeating: 0, count: trainProblem.parameterCount)
        var points: [GridPoint] = []
        var thetas: [[Double]] = []
        for c in cs {
            let lambda = 1 / (c * Double(trainProblem.rows))
            let minimum = LogisticRegression.minimize(from: theta) {
                LogisticRegression.objective($0, trainProblem, lambda: lambda)
            }
            guard minimum.value.isFinite else {
                throw ZooError.invalidArgument("the logistic regression diverged at C \(c): the features hold non-finite values")
            }
            theta = minimum.theta
            let trainScore = LogisticRegression.score(theta, trainProblem)
            let valScore = valProblem.map { LogisticRegression.score(theta, $0) }
            let point = GridPoint(c: c, lambda: lambda, iterations: minimum.iterations, converged: minimum.converged,
                                  objective: minimum.value, trainLoss: trainScore.loss, trainAccuracy: trainScore.accuracy,
                                  validationLoss: valScore?.loss, validationAccuracy: valScore?.accuracy)
            points.append(point)
            thetas.append(theta)
            report?(point)
        }
        var chosen = 0
        for (i, p) in points.enumerated() {
            let best = points[chosen]
            let (a, b) = (p.validationAccuracy ?? 0, best.validationAccuracy ?? 0)
            if a > b + 1e-12 || (abs(a - b) <= 1e-12 && (p.validationLoss ?? 0) < (best.validationLoss ?? 0)) { chosen = i }
        }
        // Fold the standardisation: W (x - m) / s + b = (W / s) x + (b - W m / s).
        let kept = thetas[chosen]
        let d = train.dimension
        var weight = [Float](repeating: 0, count: classes * d)
        var bias = [Float](repeating: 0, count: classes)
        for j in 0..<classes {
            var shift = kept[classes * d + j]
            for i in 0..<d {
                let w = kept[j * d + i] / scale[i]
                weight[j * d + i] = Float(w)
                shift -= w * mean[i]
            }
            bias[j] = Float(shift)
        }
        return Fit(grid: points, chosen: chosen, weight: weight, bias: bias, mean: mean, scale: scale)
    }
}

//! Support vector machines (`SVMClassifier`, `SVMRegressor`, which skl2onnx emits for `SVC`
//! and `SVR`): the kernels, the one-versus-one decision values and votes, and libsvm's pairwise
//! coupling of Platt-scaled probabilities, as ONNX Runtime evaluates them. Sums are in `f64`,
//! as libsvm and scikit-learn compute them.
//!
//! Every length is checked when the model is built, so evaluation cannot index out of bounds.

use crate::RealtimeError;

/// The kernel of the support vectors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kernel {
    Linear,
    Poly { gamma: f64, coef0: f64, degree: i32 },
    Rbf { gamma: f64 },
    Sigmoid { gamma: f64, coef0: f64 },
}

impl Kernel {
    /// The kernel of `kernel_type` with `kernel_params` (gamma, coef0, degree).
    pub(crate) fn parse(name: &str, params: &[f32]) -> Result<Kernel, RealtimeError> {
        let param = |index: usize| f64::from(params.get(index).copied().unwrap_or(0.0));
        Ok(match name.to_ascii_uppercase().as_str() {
            "LINEAR" => Kernel::Linear,
            "POLY" => Kernel::Poly {
                gamma: param(0),
                coef0: param(1),
                degree: param(2) as i32,
            },
            "RBF" => Kernel::Rbf { gamma: param(0) },
            "SIGMOID" => Kernel::Sigmoid {
                gamma: param(0),
                coef0: param(1),
            },
            other => {
                return Err(RealtimeError::InvalidModel(format!(
                    "unknown SVM kernel `{other}`"
                )));
            }
        })
    }

    fn apply(self, a: &[f32], b: &[f32]) -> f64 {
        let dot = || {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum::<f64>()
        };
        match self {
            Kernel::Linear => dot(),
            Kernel::Poly {
                gamma,
                coef0,
                degree,
            } => (gamma * dot() + coef0).powi(degree),
            Kernel::Rbf { gamma } => {
                let distance: f64 = a
                    .iter()
                    .zip(b)
                    .map(|(&x, &y)| {
                        let d = f64::from(x) - f64::from(y);
                        d * d
                    })
                    .sum();
                (-gamma * distance).exp()
            }
            Kernel::Sigmoid { gamma, coef0 } => (gamma * dot() + coef0).tanh(),
        }
    }
}

/// Support vectors and the number of features they have.
#[derive(Debug)]
struct SupportVectors {
    values: Vec<f32>,
    count: usize,
    width: usize,
}

impl SupportVectors {
    fn new(values: Vec<f32>, count: usize) -> Result<SupportVectors, RealtimeError> {
        if count == 0 || values.is_empty() || !values.len().is_multiple_of(count) {
            return Err(RealtimeError::InvalidModel(format!(
                "{} support vector values do not make {count} vectors",
                values.len()
            )));
        }
        let width = values.len() / count;
        Ok(SupportVectors {
            values,
            count,
            width,
        })
    }

    /// The kernel of `features` with every support vector.
    fn kernels(&self, kernel: Kernel, features: &[f32]) -> Vec<f64> {
        self.values
            .chunks_exact(self.width)
            .map(|vector| kernel.apply(features, vector))
            .collect()
    }
}

/// An `SVMClassifier` with support vectors (one-versus-one).
#[derive(Debug)]
pub(crate) struct SvmClassifier {
    kernel: Kernel,
    vectors: SupportVectors,
    /// Where each class's support vectors start, and how many it has.
    classes: Vec<(usize, usize)>,
    /// `classes - 1` rows of one coefficient per support vector.
    coefficients: Vec<f32>,
    /// One per pair of classes.
    rho: Vec<f32>,
    /// Platt scaling per pair, when the model gives probabilities.
    platt: Option<(Vec<f32>, Vec<f32>)>,
    coefficients_all_positive: bool,
}

/// What an `SVMClassifier` node says.
pub(crate) struct SvmClassifierAttributes {
    pub(crate) kernel: Kernel,
    pub(crate) support_vectors: Vec<f32>,
    pub(crate) vectors_per_class: Vec<i64>,
    pub(crate) coefficients: Vec<f32>,
    pub(crate) rho: Vec<f32>,
    pub(crate) prob_a: Vec<f32>,
    pub(crate) prob_b: Vec<f32>,
    pub(crate) n_labels: usize,
}

impl SvmClassifier {
    pub(crate) fn new(attributes: SvmClassifierAttributes) -> Result<SvmClassifier, RealtimeError> {
        let invalid = |message: String| Err(RealtimeError::InvalidModel(message));
        let n_classes = attributes.vectors_per_class.len();
        if n_classes < 2 || n_classes != attributes.n_labels {
            return invalid(format!(
                "the SVM classifier has {n_classes} classes of support vectors and {} labels",
                attributes.n_labels
            ));
        }
        let mut classes = Vec::with_capacity(n_classes);
        let mut start = 0usize;
        for &count in &attributes.vectors_per_class {
            let Ok(count) = usize::try_from(count) else {
                return invalid(format!("a class has {count} support vectors"));
            };
            classes.push((start, count));
            start += count;
        }
        let vectors = SupportVectors::new(attributes.support_vectors, start)?;
        let pairs = n_classes * (n_classes - 1) / 2;
        if attributes.coefficients.len() != (n_classes - 1) * vectors.count {
            return invalid(format!(
                "the SVM classifier has {} coefficients for {} classes and {} support vectors",
                attributes.coefficients.len(),
                n_classes,
                vectors.count
            ));
        }
        if attributes.rho.len() != pairs {
            return invalid(format!(
                "the SVM classifier has {} rho values for {pairs} pairs of classes",
                attributes.rho.len()
            ));
        }
        let platt = match (attributes.prob_a.len(), attributes.prob_b.len()) {
            (0, 0) => None,
            (a, b) if a == pairs && b == pairs => Some((attributes.prob_a, attributes.prob_b)),
            (a, b) => {
                return invalid(format!(
                    "the SVM classifier has {a} prob_a and {b} prob_b values for {pairs} pairs of classes"
                ));
            }
        };
        let coefficients_all_positive = attributes.coefficients.iter().all(|&c| c >= 0.0);
        Ok(SvmClassifier {
            kernel: attributes.kernel,
            vectors,
            classes,
            coefficients: attributes.coefficients,
            rho: attributes.rho,
            platt,
            coefficients_all_positive,
        })
    }

    /// The features a row must have.
    pub(crate) fn n_features(&self) -> usize {
        self.vectors.width
    }

    /// Score columns per row: the probability of each class, or (without probabilities) the
    /// decision value of each pair of classes, two columns (`-d`, `d`) for a binary model.
    pub(crate) fn outputs(&self) -> usize {
        let n_classes = self.classes.len();
        match (&self.platt, n_classes) {
            (Some(_), _) | (None, 2) => n_classes,
            (None, _) => n_classes * (n_classes - 1) / 2,
        }
    }

    /// Scores `rows` of `width` features into `out` and returns each row's class (by votes).
    pub(crate) fn score(&self, features: &[f32], width: usize, out: &mut [f32]) -> Vec<usize> {
        let n_classes = self.classes.len();
        let n_vectors = self.vectors.count;
        let outputs = self.outputs();
        features
            .chunks_exact(width)
            .zip(out.chunks_exact_mut(outputs))
            .map(|(row, scores)| {
                let kernels = self
                    .vectors
                    .kernels(self.kernel, &row[..self.vectors.width]);
                let mut votes = vec![0usize; n_classes];
                let mut decisions = Vec::with_capacity(self.rho.len());
                for i in 0..n_classes {
                    let (start_i, count_i) = self.classes[i];
                    for j in i + 1..n_classes {
                        let (start_j, count_j) = self.classes[j];
                        let weighted = |row: usize, start: usize, count: usize| -> f64 {
                            let coefficients =
                                &self.coefficients[row * n_vectors..][start..start + count];
                            coefficients
                                .iter()
                                .zip(&kernels[start..start + count])
                                .map(|(&c, &k)| f64::from(c) * k)
                                .sum()
                        };
                        let decision = f64::from(self.rho[decisions.len()])
                            + weighted(j - 1, start_i, count_i)
                            + weighted(i, start_j, count_j);
                        if decision > 0.0 {
                            votes[i] += 1;
                        } else {
                            votes[j] += 1;
                        }
                        decisions.push(decision);
                    }
                }
                match &self.platt {
                    Some((a, b)) => {
                        let probabilities = coupled_probabilities(n_classes, &decisions, a, b);
                        for (score, probability) in scores.iter_mut().zip(probabilities) {
                            *score = probability as f32;
                        }
                    }
                    None if n_classes == 2 => {
                        scores[0] = -decisions[0] as f32;
                        scores[1] = decisions[0] as f32;
                    }
                    None => {
                        for (score, decision) in scores.iter_mut().zip(&decisions) {
                            *score = *decision as f32;
                        }
                    }
                }
                let winner = votes.iter().enumerate().fold(0, |best, (class, &count)| {
                    if count > votes[best] { class } else { best }
                });
                // ONNX Runtime's rule for binary models without probabilities whose
                // coefficients are all positive.
                if n_classes == 2 && self.platt.is_none() && self.coefficients_all_positive {
                    1
                } else {
                    winner
                }
            })
            .collect()
    }
}

/// libsvm's probabilities from the pairwise decision values: Platt scaling of each pair, then
/// the pairwise coupling of Wu, Lin and Weng (libsvm's `multiclass_probability`). The loops
/// keep libsvm's matrix indices, so that the two can be read side by side.
#[allow(clippy::needless_range_loop)]
fn coupled_probabilities(n_classes: usize, decisions: &[f64], a: &[f32], b: &[f32]) -> Vec<f64> {
    const MIN_PROBABILITY: f64 = 1e-7;
    let mut pairwise = vec![vec![0f64; n_classes]; n_classes];
    let mut index = 0;
    for i in 0..n_classes {
        for j in i + 1..n_classes {
            let value = decisions[index] * f64::from(a[index]) + f64::from(b[index]);
            // 1 - logistic(value), written so that it does not overflow.
            let probability = if value >= 0.0 {
                (-value).exp() / (1.0 + (-value).exp())
            } else {
                1.0 / (1.0 + value.exp())
            };
            let probability = probability.clamp(MIN_PROBABILITY, 1.0 - MIN_PROBABILITY);
            pairwise[i][j] = probability;
            pairwise[j][i] = 1.0 - probability;
            index += 1;
        }
    }
    let k = n_classes;
    let mut q = vec![vec![0f64; k]; k];
    for t in 0..k {
        for j in 0..t {
            q[t][t] += pairwise[j][t] * pairwise[j][t];
            q[t][j] = q[j][t];
        }
        for j in t + 1..k {
            q[t][t] += pairwise[j][t] * pairwise[j][t];
            q[t][j] = -pairwise[j][t] * pairwise[t][j];
        }
    }
    let mut p = vec![1.0 / k as f64; k];
    let mut qp = vec![0f64; k];
    let eps = 0.005 / k as f64;
    for _ in 0..100.max(k) {
        let mut pqp = 0.0;
        for t in 0..k {
            qp[t] = (0..k).map(|j| q[t][j] * p[j]).sum();
            pqp += p[t] * qp[t];
        }
        let max_error = qp
            .iter()
            .map(|&value| (value - pqp).abs())
            .fold(0.0, f64::max);
        if max_error < eps {
            break;
        }
        for t in 0..k {
            let diff = (-qp[t] + pqp) / q[t][t];
            p[t] += diff;
            pqp = (pqp + diff * (diff * q[t][t] + 2.0 * qp[t])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[t][j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
    p
}

/// An `SVMRegressor`: with support vectors, or linear.
#[derive(Debug)]
pub(crate) struct SvmRegressor {
    kernel: Kernel,
    /// `None` for a linear model, whose coefficients are the weights of the features.
    vectors: Option<SupportVectors>,
    coefficients: Vec<f32>,
    rho: f32,
    one_class: bool,
}

impl SvmRegressor {
    pub(crate) fn new(
        kernel: Kernel,
        support_vectors: Vec<f32>,
        n_supports: i64,
        coefficients: Vec<f32>,
        rho: &[f32],
        one_class: bool,
    ) -> Result<SvmRegressor, RealtimeError> {
        let invalid = |message: String| Err(RealtimeError::InvalidModel(message));
        let [rho] = rho else {
            return invalid(format!(
                "the SVM regressor has {} rho values, not 1",
                rho.len()
            ));
        };
        let vectors = match usize::try_from(n_supports) {
            Ok(0) => None,
            Ok(count) => Some(SupportVectors::new(support_vectors, count)?),
            Err(_) => {
                return invalid(format!(
                    "the SVM regressor has {n_supports} support vectors"
                ));
            }
        };
        let expected = vectors.as_ref().map(|vectors| vectors.count);
        if coefficients.is_empty() || expected.is_some_and(|count| coefficients.len() != count) {
            return invalid(format!(
                "the SVM regressor has {} coefficients for {} support vectors",
                coefficients.len(),
                expected.unwrap_or(0)
            ));
        }
        Ok(SvmRegressor {
            kernel,
            vectors,
            coefficients,
            rho: *rho,
            one_class,
        })
    }

    /// The features a row must have.
    pub(crate) fn n_features(&self) -> usize {
        match &self.vectors {
            Some(vectors) => vectors.width,
            None => self.coefficients.len(),
        }
    }

    /// Scores rows of `width` features into `out`, one value per row.
    pub(crate) fn score(&self, features: &[f32], width: usize, out: &mut [f32]) {
        let n_features = self.n_features();
        for (row, value) in features.chunks_exact(width).zip(out.iter_mut()) {
            let row = &row[..n_features];
            let sum = match &self.vectors {
                Some(vectors) => vectors
                    .kernels(self.kernel, row)
                    .iter()
                    .zip(&self.coefficients)
                    .map(|(&k, &c)| k * f64::from(c))
                    .sum::<f64>(),
                None => self.kernel.apply(row, &self.coefficients),
            } + f64::from(self.rho);
            *value = if self.one_class {
                if sum > 0.0 { 1.0 } else { -1.0 }
            } else {
                sum as f32
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_classes_couple_to_their_pairwise_probability() {
        // With two classes the coupling gives back Platt's probability of the pair.
        let p = coupled_probabilities(2, &[0.7], &[-2.0], &[0.1]);
        let platt = 1.0 / (1.0 + (0.7f64 * -2.0 + 0.1).exp());
        assert!((p[0] - platt).abs() < 1e-6, "{p:?}");
        assert!((p[0] + p[1] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn hostile_lengths_are_refused() {
        let attributes = |vectors_per_class: Vec<i64>, coefficients: usize, rho: usize| {
            SvmClassifierAttributes {
                kernel: Kernel::Linear,
                support_vectors: vec![0.0; 4],
                vectors_per_class,
                coefficients: vec![1.0; coefficients],
                rho: vec![0.0; rho],
                prob_a: Vec::new(),
                prob_b: Vec::new(),
                n_labels: 2,
            }
        };
        assert!(SvmClassifier::new(attributes(vec![1, 1], 2, 1)).is_ok());
        assert!(SvmClassifier::new(attributes(vec![1, 1], 3, 1)).is_err());
        assert!(SvmClassifier::new(attributes(vec![1, 1], 2, 2)).is_err());
        assert!(SvmClassifier::new(attributes(vec![1, -1], 2, 1)).is_err());
        assert!(SvmClassifier::new(attributes(vec![3, 0], 2, 1)).is_err());
        assert!(
            SvmRegressor::new(Kernel::Linear, vec![0.0; 3], 2, vec![1.0; 2], &[0.0], false)
                .is_err()
        );
        assert!(
            SvmRegressor::new(Kernel::Linear, vec![], 0, vec![1.0; 3], &[0.0, 1.0], false).is_err()
        );
    }

    #[test]
    fn a_linear_regressor_without_support_vectors_is_a_dot_product() {
        let model =
            SvmRegressor::new(Kernel::Linear, vec![], 0, vec![2.0, -1.0], &[0.5], false).unwrap();
        let mut out = [0f32; 2];
        model.score(&[1.0, 1.0, 3.0, 2.0], 2, &mut out);
        assert_eq!(out, [1.5, 4.5]);
    }
}

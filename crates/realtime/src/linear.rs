//! A native evaluator for the ONNX-ML linear models (`LinearClassifier`, `LinearRegressor`)
//! and `Normalizer`, the operators that scikit-learn's linear models export to.
//!
//! tract runs them as a graph of about ten generic operators, each allocating its result, which
//! costs more than the arithmetic for the few rows of a typical request; here each is one pass
//! over the rows.

use crate::RealtimeError;
use crate::tree::{PostTransform, Real};

/// `scores = x · coefficientsᵀ + intercepts`, then the post transform.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LinearModel {
    /// `targets × features`, row-major.
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    targets: usize,
    features: usize,
    post_transform: PostTransform,
    /// A binary classifier with one set of coefficients (see [`PostTransform::binary`]).
    binary_single_score: bool,
}

impl LinearModel {
    /// `outputs` is the number of score columns: classes for a classifier, targets for a
    /// regressor.
    pub(crate) fn new(
        coefficients: Vec<f32>,
        intercepts: Vec<f32>,
        outputs: usize,
        classifier: bool,
        post_transform: PostTransform,
    ) -> Result<Self, RealtimeError> {
        let invalid = |message: String| RealtimeError::InvalidModel(message);
        if outputs == 0 || coefficients.is_empty() {
            return Err(invalid("a linear model needs coefficients".to_owned()));
        }
        let binary_single_score = classifier && outputs == 2 && intercepts.len() <= 1 && {
            // One set of coefficients for two classes: the score of the second class.
            !coefficients.len().is_multiple_of(2) || intercepts.len() == 1
        };
        let targets = if binary_single_score { 1 } else { outputs };
        if !coefficients.len().is_multiple_of(targets) {
            return Err(invalid(format!(
                "{} coefficients do not divide into {targets} targets",
                coefficients.len()
            )));
        }
        if !intercepts.is_empty() && intercepts.len() != targets {
            return Err(invalid(format!(
                "{} intercepts for {targets} targets",
                intercepts.len()
            )));
        }
        if binary_single_score {
            post_transform.check_single_score("linear classifier")?;
        }
        let features = coefficients.len() / targets;
        Ok(LinearModel {
            intercepts: if intercepts.is_empty() {
                vec![0.0; targets]
            } else {
                intercepts
            },
            coefficients,
            targets,
            features,
            post_transform,
            binary_single_score,
        })
    }

    /// The number of features a row must have.
    pub(crate) fn features(&self) -> usize {
        self.features
    }

    /// The number of score columns per row.
    pub(crate) fn outputs(&self) -> usize {
        if self.binary_single_score {
            2
        } else {
            self.targets
        }
    }

    /// Scores rows of `self.features()` features (row-major) into `out`, `outputs` values per
    /// row.
    pub(crate) fn score(&self, features: &[f32], out: &mut [f32]) {
        let outputs = self.outputs();
        for (row, scores) in features
            .chunks_exact(self.features)
            .zip(out.chunks_exact_mut(outputs))
        {
            for (target, score) in scores.iter_mut().take(self.targets).enumerate() {
                let weights = &self.coefficients[target * self.features..][..self.features];
                *score = self.intercepts[target]
                    + row.iter().zip(weights).map(|(x, w)| x * w).sum::<f32>();
            }
            if self.binary_single_score {
                // A linear score is signed, so it is never treated as a probability.
                scores.copy_from_slice(&self.post_transform.binary(scores[0], false));
            } else {
                self.post_transform.apply(scores);
            }
        }
    }
}

/// How `Normalizer` scales each row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Norm {
    Max,
    L1,
    L2,
}

impl Norm {
    pub(crate) fn parse(text: &str) -> Result<Self, RealtimeError> {
        match text {
            "MAX" => Ok(Norm::Max),
            "L1" => Ok(Norm::L1),
            "L2" => Ok(Norm::L2),
            other => Err(RealtimeError::InvalidModel(format!(
                "unknown Normalizer norm `{other}`"
            ))),
        }
    }

    /// Divides each row of `width` values by its norm (rows whose norm is zero stay as they
    /// are).
    pub(crate) fn apply<T: Real>(self, values: &mut [T], width: usize) {
        for row in values.chunks_exact_mut(width.max(1)) {
            let norm = match self {
                Norm::Max => row.iter().fold(T::zero(), |m, v| m.max(v.abs())),
                Norm::L1 => row.iter().fold(T::zero(), |sum, v| sum + v.abs()),
                Norm::L2 => row.iter().fold(T::zero(), |sum, &v| sum + v * v).sqrt(),
            };
            if norm > T::zero() {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regressor_is_a_dot_product_plus_intercept() {
        let model =
            LinearModel::new(vec![2.0, -1.0], vec![0.5], 1, false, PostTransform::None).unwrap();
        let mut out = [0.0; 2];
        model.score(&[1.0, 2.0, 3.0, 0.0], &mut out);
        assert_eq!(out, [0.5, 6.5]);
    }

    #[test]
    fn a_binary_classifier_with_one_score_gives_both_probabilities() {
        let model =
            LinearModel::new(vec![1.0], vec![0.0], 2, true, PostTransform::Logistic).unwrap();
        let mut out = [0.0; 2];
        model.score(&[0.0], &mut out);
        assert_eq!(out, [0.5, 0.5]);
    }

    #[test]
    fn norms_scale_rows() {
        let mut values = [3.0, 4.0, 0.0, 0.0];
        Norm::L2.apply(&mut values, 2);
        assert_eq!(values, [0.6, 0.8, 0.0, 0.0]);
        let mut values = [1.0, 3.0];
        Norm::L1.apply(&mut values, 2);
        assert_eq!(values, [0.25, 0.75]);
    }
}

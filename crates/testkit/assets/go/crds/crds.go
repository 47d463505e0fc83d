// Package crds pins the API types whose CRDs testkit generates.
package crds

import _ "volcano.sh/apis/pkg/apis/batch/v1alpha1"
